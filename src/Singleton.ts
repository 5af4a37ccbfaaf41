/**
 * Runs an effect on exactly one node at a time, across any number of processes, by PostgreSQL advisory locks.
 *
 * Each `run` holds a session advisory lock on a connection of its own (never one from the application's pool),
 * re-verifies it every `verifyInterval` and, on any doubt, interrupts the guarded effect and competes again. A node
 * that wins waits twice `verifyInterval` before starting the effect, so an old holder that has not yet noticed its
 * loss has stopped by then: two holders never run at once. A holder that can no longer reach the database stops its
 * effect when a check times out; the server ends that session (freeing the lock) once it has been idle for twice the
 * longer of the two intervals plus one second (`idle_session_timeout`, PostgreSQL 14 and later).
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as internal from "./internal/singleton.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /**
   * How often a node that does not hold the lock tries again, and how long it waits before reconnecting after a
   * connection error; a node that lost the lock waits twice this before competing again, so that a node that still
   * reaches the database takes over first. A positive, finite duration. Default: 1 second.
   */
  readonly pollInterval?: Duration.DurationInput | undefined
  /**
   * How often the holder checks, on its own connection, that it still holds the lock; each check gives up after
   * half of it. A new holder waits twice this before starting the effect, so the guarded effect must stop within
   * half of it once interrupted. A positive, finite duration. Default: 2 seconds.
   */
  readonly verifyInterval?: Duration.DurationInput | undefined
}

/**
 * `run` was given an empty or non-string name (`invalid-name`), or options that are not an object or an interval
 * that is not a positive, finite duration (`invalid-options`). Nothing was locked and the effect never ran.
 *
 * @since 0.1.0
 * @category errors
 */
export const SingletonError: typeof internal.SingletonError = internal.SingletonError

/**
 * @since 0.1.0
 * @category errors
 */
export type SingletonError = internal.SingletonError

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Singleton {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /**
     * Competes for leadership of `name` until it wins, then runs `effect`. When leadership is lost, `effect` is
     * interrupted and the node competes again; the effect starts over when leadership returns. Connection errors
     * never end the run. Succeeds or fails as `effect` does, releasing the lock; fails with `SingletonError`, before
     * competing, when `name` or `options` are unusable.
     */
    readonly run: <A, E, R>(
      name: string,
      effect: Effect.Effect<A, E, R>,
      options?: RunOptions
    ) => Effect.Effect<A, E | SingletonError, R>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export class Singleton extends Context.Tag("eventodb-kit/Singleton")<Singleton, Singleton.Service>() {}

/**
 * Runs `effect` while this node leads `name`; see {@link Singleton.Service}.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Singleton } from "eventodb-kit"
 *
 * const sender = Singleton.run("outbox-sender:default", Effect.never, { verifyInterval: "2 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const run = <A, E, R>(
  name: string,
  effect: Effect.Effect<A, E, R>,
  options?: RunOptions
): Effect.Effect<A, E | SingletonError, R | Singleton> =>
  Effect.flatMap(Singleton, (singleton) => singleton.run(name, effect, options))

/**
 * The PostgreSQL service. Each `run` opens its own connections with the settings of the `PgClient` (its `config`),
 * outside the client's pool, and closes them when it ends.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Singleton.Service, never, PgClient.PgClient> = Effect.map(
  PgClient.PgClient,
  (client) => internal.make(internal.pgConnect(client.config))
)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Singleton, never, PgClient.PgClient> = Layer.effect(Singleton, make)

/**
 * An in-process service: one lock table per service, for tests and single-process applications. A name's `run`
 * waits until the previous one ends; leadership is never lost, and the options are checked as `layer` checks them but
 * otherwise ignored.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Singleton.Service> = Effect.sync(internal.makeMemory)

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<Singleton> = Layer.effect(Singleton, makeMemory)
