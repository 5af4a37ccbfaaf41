/**
 * Where each consumer has got to: the global position of the last message it handled, per
 * `{ namespace, category, consumerId }`. A consumer resumes at the saved position + 1; no saved position means it
 * never handled anything and reads from the start.
 *
 * `save` never moves a position backwards (a late or repeated save is harmless); only `reset` does. The SQL layer
 * runs on the `SqlClient` captured when the layer is built, so its statements join whatever `sql.withTransaction`
 * the calling fiber is in: a position can commit together with the handler's own writes.
 *
 * @example
 * ```ts
 * import { PositionStore } from "eventodb-kit"
 * import * as Effect from "effect/Effect"
 *
 * const key = { namespace: "shop", category: "order", consumerId: "projector" }
 * const program = Effect.gen(function*() {
 *   yield* PositionStore.save(key, 42)
 *   const saved = yield* PositionStore.load(key) // Option.some(42)
 * })
 * ```
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as internal from "./internal/positionStore.js"

/**
 * Input a store method refused before any statement, and why (`reason`): `invalid-namespace`, `invalid-category`,
 * `invalid-consumer-id` (each must be a non-empty string), `invalid-position` (not a non-negative safe integer),
 * `invalid-event-id` (not a UUID; from `Idempotency`). Nothing is written.
 *
 * @since 0.1.0
 * @category errors
 */
export const InvalidConsumerInput: typeof internal.InvalidConsumerInput = internal.InvalidConsumerInput

/**
 * @since 0.1.0
 * @category errors
 */
export type InvalidConsumerInput = internal.InvalidConsumerInput

/**
 * Identifies one consumer: its namespace, the category it reads and its id (distinct per consumer-group member).
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsumerKey {
  readonly namespace: string
  readonly category: string
  readonly consumerId: string
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace PositionStore {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** The saved global position, or none when the consumer never saved one. */
    readonly load: (key: ConsumerKey) => Effect.Effect<Option.Option<number>, SqlError | InvalidConsumerInput>
    /** Saves `position` (a non-negative safe integer) unless a higher one is saved already. */
    readonly save: (key: ConsumerKey, position: number) => Effect.Effect<void, SqlError | InvalidConsumerInput>
    /** Sets the position to `position` (a non-negative safe integer), backwards too (to replay, or to skip ahead). */
    readonly reset: (key: ConsumerKey, position: number) => Effect.Effect<void, SqlError | InvalidConsumerInput>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export class PositionStore extends Context.Tag("eventodb-kit/PositionStore")<PositionStore, PositionStore.Service>() {}

/**
 * The SQL store on `evento_consumer_positions` (run `Migrations.up` first).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<PositionStore.Service, never, SqlClient.SqlClient> = internal.make

/**
 * An in-memory store with the same rules, for tests and tools; it forgets everything when its layer is released.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<PositionStore.Service> = internal.makeMemory

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<PositionStore, never, SqlClient.SqlClient> = Layer.effect(PositionStore, make)

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<PositionStore> = Layer.effect(PositionStore, makeMemory)

/**
 * @since 0.1.0
 * @category accessors
 */
export const load = (
  key: ConsumerKey
): Effect.Effect<Option.Option<number>, SqlError | InvalidConsumerInput, PositionStore> =>
  Effect.flatMap(PositionStore, (store) => store.load(key))

/**
 * @since 0.1.0
 * @category accessors
 */
export const save = (
  key: ConsumerKey,
  position: number
): Effect.Effect<void, SqlError | InvalidConsumerInput, PositionStore> =>
  Effect.flatMap(PositionStore, (store) => store.save(key, position))

/**
 * @since 0.1.0
 * @category accessors
 */
export const reset = (
  key: ConsumerKey,
  position: number
): Effect.Effect<void, SqlError | InvalidConsumerInput, PositionStore> =>
  Effect.flatMap(PositionStore, (store) => store.reset(key, position))
