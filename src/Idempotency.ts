/**
 * Which messages each consumer has handled: a mark per (consumer, event id), so a message met again (after a
 * crash, a retry, a replay) is recognised and not handled twice. Marks are scoped by
 * `{ namespace, category, consumerId }`: two consumers of one category never see each other's marks.
 *
 * A mark records the message's global position, so `cleanup` can prune old marks safely: in SQL it removes marks
 * older than `olderThan` that are at or below their consumer's saved position (a mark above it may still be
 * needed). The SQL layer runs on the `SqlClient` captured when the layer is built, so a mark joins whatever
 * `sql.withTransaction` the calling fiber is in, together with the position and the handler's own writes.
 *
 * @example
 * ```ts
 * import { type EventoClient, Idempotency } from "eventodb-kit"
 * import * as Effect from "effect/Effect"
 *
 * const key = { namespace: "shop", category: "order", consumerId: "projector" }
 * const handleOnce = (message: EventoClient.Message, handle: Effect.Effect<void>) =>
 *   Effect.gen(function*() {
 *     if (yield* Idempotency.isProcessed(key, message.id)) return
 *     yield* handle
 *     yield* Idempotency.markProcessed(key, message)
 *   })
 * const pruneWeekOld = Idempotency.cleanup({ olderThan: "7 days" })
 * ```
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Message } from "./EventoClient.js"
import * as internal from "./internal/idempotency.js"
import type { ConsumerKey, InvalidConsumerInput } from "./PositionStore.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface CleanupOptions {
  /** Marks processed longer ago than this are candidates for removal. Required. */
  readonly olderThan: Duration.DurationInput
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Idempotency {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /**
     * Whether this consumer marked the event (a UUID) as processed. A bad key or an id that is not a UUID fails
     * with `PositionStore.InvalidConsumerInput`.
     */
    readonly isProcessed: (key: ConsumerKey, eventId: string) => Effect.Effect<boolean, SqlError | InvalidConsumerInput>
    /**
     * Marks the message as processed by this consumer, with its global position; marking it again does nothing. A
     * bad key, a message id that is not a UUID or a position that is not a non-negative safe integer fails with
     * `PositionStore.InvalidConsumerInput` and marks nothing.
     */
    readonly markProcessed: (key: ConsumerKey, message: Message) => Effect.Effect<void, SqlError | InvalidConsumerInput>
    /** Removes old marks (see the module notes) and yields how many went. */
    readonly cleanup: (options: CleanupOptions) => Effect.Effect<number, SqlError>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export class Idempotency extends Context.Tag("eventodb-kit/Idempotency")<Idempotency, Idempotency.Service>() {}

/**
 * The SQL store on `evento_processed_events` (run `Migrations.up` first).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Idempotency.Service, never, SqlClient.SqlClient> = internal.make

/**
 * An in-memory store, for tests and tools. It cannot see consumer positions, so its `cleanup` goes by age alone.
 * Marks are timed with the `Clock` service.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Idempotency.Service> = internal.makeMemory

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Idempotency, never, SqlClient.SqlClient> = Layer.effect(Idempotency, make)

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<Idempotency> = Layer.effect(Idempotency, makeMemory)

/**
 * @since 0.1.0
 * @category accessors
 */
export const isProcessed = (
  key: ConsumerKey,
  eventId: string
): Effect.Effect<boolean, SqlError | InvalidConsumerInput, Idempotency> =>
  Effect.flatMap(Idempotency, (store) => store.isProcessed(key, eventId))

/**
 * @since 0.1.0
 * @category accessors
 */
export const markProcessed = (
  key: ConsumerKey,
  message: Message
): Effect.Effect<void, SqlError | InvalidConsumerInput, Idempotency> =>
  Effect.flatMap(Idempotency, (store) => store.markProcessed(key, message))

/**
 * @since 0.1.0
 * @category accessors
 */
export const cleanup = (options: CleanupOptions): Effect.Effect<number, SqlError, Idempotency> =>
  Effect.flatMap(Idempotency, (store) => store.cleanup(options))
