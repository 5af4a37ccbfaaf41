/**
 * Consumers: read a category from a saved position, handle each message at most once, and keep going through
 * EventoDB and database downtime.
 *
 * A consumer fetches from its saved global position + 1 with the server-side consumer-group and correlation
 * filters, handles the batch in global-position order, then commits the processed marks and the position together.
 * Pokes from a subscription on the category wake it early; a fallback poll runs regardless.
 *
 * @example
 * ```ts
 * import { Consumer } from "eventodb-kit"
 * import * as Effect from "effect/Effect"
 * import * as Schema from "effect/Schema"
 *
 * const Opened = Schema.Struct({ owner: Schema.String })
 *
 * const AccountProjection = Consumer.layer({
 *   category: "account",
 *   consumerId: "projection",
 *   handler: Consumer.dispatch({
 *     handlers: { Opened: Consumer.on(Opened, (data) => Effect.log("opened", data.owner)) },
 *     unknown: "skip"
 *   })
 * })
 * ```
 *
 * @since 0.1.0
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { ParseError } from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { ConsumerGroup, EventoClient, Message } from "./EventoClient.js"
import type { EventoError } from "./EventoError.js"
import type { Idempotency } from "./Idempotency.js"
// `internal/consumer.ts` imports the error classes below: this module reaches into it only when called, so either
// may be loaded first.
import * as internal from "./internal/consumer.js"
import * as consumerMetrics from "./internal/consumerMetrics.js"
import type { PositionStore } from "./PositionStore.js"
import type { Singleton } from "./Singleton.js"

/**
 * How a failing handler is retried before `onFailure` applies.
 *
 * @since 0.1.0
 * @category models
 */
export interface Retry {
  /** Runs of the handler for one message in all, the first included. Default: 3. */
  readonly attempts?: number | undefined
  /** Delay before the first retry. Default: 100 milliseconds. */
  readonly delay?: Duration.DurationInput | undefined
  /** Each further delay is the previous one times this. Default: 2. */
  readonly factor?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E, R> {
  /** The category to read. */
  readonly category: string
  /** Names this consumer's position and marks. Members of a group need one each, e.g. `member-0`. */
  readonly consumerId: string
  /** Read only this member's share of the streams (the server's MD5 rule). Default: every stream. */
  readonly group?: ConsumerGroup | undefined
  /** Read only messages whose `metadata.correlationStreamName` has this category. Default: no filter. */
  readonly correlation?: string | undefined
  /** Messages per fetch, 1 to 10000. Default: 100. */
  readonly batchSize?: number | undefined
  /** Fallback poll when no poke arrives. Default: 1 second. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** Handles one message. Its failures (and defects) are retried per `retry`. */
  readonly handler: (message: Message) => Effect.Effect<unknown, E, R>
  /**
   * Run each message's handler, its processed mark and the position in one `sql.withTransaction`, so that the
   * handler's own SQL commits with them. Default: false (marks and position commit once per batch).
   */
  readonly transactional?: boolean | undefined
  /** Default: 3 attempts, 100 milliseconds doubling. */
  readonly retry?: Retry | undefined
  /**
   * After the last attempt: `"stop"` fails the consumer with `HandlerFailed`, the position left before the message;
   * `"park"` writes it to `evento_parked_messages`, marks it and goes on. Default: `"stop"`.
   */
  readonly onFailure?: "stop" | "park" | undefined
  /** `layer` only: wait before starting a consumer that failed. Default: 30 seconds. */
  readonly restartDelay?: Duration.DurationInput | undefined
}

/**
 * A handler failed for every attempt and `onFailure` is `"stop"`. The position is left before this message.
 *
 * @since 0.1.0
 * @category errors
 */
export class HandlerFailed extends Schema.TaggedError<HandlerFailed>()("HandlerFailed", {
  message: Schema.String,
  category: Schema.String,
  consumerId: Schema.String,
  messageId: Schema.String,
  stream: Schema.String,
  type: Schema.String,
  globalPosition: Schema.Number,
  position: Schema.Number,
  attempts: Schema.Number,
  cause: Schema.Defect
}) {}

/**
 * `dispatch` met a message type it has no handler for, with `unknown: "fail"`.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownMessageType extends Schema.TaggedError<UnknownMessageType>()("UnknownMessageType", {
  message: Schema.String,
  type: Schema.String,
  messageId: Schema.String
}) {}

/**
 * What `run` and `layer` need besides the handler's own requirements. The consumer commits a batch's marks and
 * position in one statement on the `SqlClient`, on the tables of `PositionStore.layer` and `Idempotency.layer`: use
 * those layers (not the memory ones) with a consumer, on the same database.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements = EventoClient | PositionStore | Idempotency | SqlClient

/**
 * Runs a consumer until it is interrupted or fails. It fails with `HandlerFailed` (a handler gave up, `onFailure`
 * `"stop"`) or with an `EventoError` EventoDB will not get over by waiting (auth, an invalid request); unreachable
 * servers, timeouts, 5xx answers and database errors are waited out with capped backoff.
 *
 * Run one instance per consumer key at a time (`layer` ensures it with `Singleton`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const run: <E, R>(
  options: Options<E, R>
) => Effect.Effect<never, HandlerFailed | EventoError, R | Requirements> = (options) => internal.run(options)

/**
 * Runs the consumer in the layer's scope under `Singleton` name `consumer:<namespace>:<category>:<consumerId>`, so
 * one process at a time runs it. When it fails, the error is logged at error level and it starts again after
 * `restartDelay`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: <E, R>(options: Options<E, R>) => Layer.Layer<never, never, R | Requirements | Singleton> = (
  options
) => internal.layer(options)

/**
 * The consumer's metrics. Each is tagged `namespace`, `category` and `consumer_id`, except `unknownTypes` (tagged
 * `category` only, as `dispatch` does not know its consumer). `lag` is the newest global position the consumer knows
 * to exist (from pokes and fetches) minus its position; until the consumer first catches up (and subscribes to
 * pokes) the newest it knows is the newest it has fetched. `handlerDuration` is in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export const metrics = consumerMetrics.metrics

/**
 * One entry of `dispatch`: the schema of the message's `data` and its handler.
 *
 * @since 0.1.0
 * @category models
 */
export type DispatchEntry<S extends Schema.Schema.Any, E, R> = readonly [
  S,
  (data: Schema.Schema.Type<S>, message: Message) => Effect.Effect<unknown, E, R>
]

/**
 * The constraint on `dispatch`'s handler map: any schema with a handler of anything.
 *
 * @since 0.1.0
 * @category models
 */
export type DispatchHandlers = {
  readonly [type: string]: readonly [
    Schema.Schema.Any,
    (data: never, message: Message) => Effect.Effect<unknown, unknown, unknown>
  ]
}

type HandlerEffect<H extends DispatchHandlers> = ReturnType<H[keyof H][1]>

/**
 * @since 0.1.0
 * @category models
 */
export interface DispatchOptions<H extends DispatchHandlers> {
  /** Message type to `[schema, handler]`; build entries with `on` to have `data` typed from the schema. */
  readonly handlers: H & { readonly [K in keyof H]: DispatchEntry<H[K][0], unknown, unknown> }
  /**
   * A type with no entry: `"skip"` counts it (metric `eventodb_consumer_unknown_types_total`) and goes on;
   * `"fail"` fails with `UnknownMessageType`, a handler failure like any other. Default: `"skip"`.
   */
  readonly unknown?: "skip" | "fail" | undefined
}

/**
 * Builds a dispatch entry with `data` typed from the schema.
 *
 * @since 0.1.0
 * @category constructors
 */
export const on = <S extends Schema.Schema.Any, E, R>(
  schema: S,
  handler: (data: Schema.Schema.Type<S>, message: Message) => Effect.Effect<unknown, E, R>
): DispatchEntry<S, E, R> => [schema, handler]

/**
 * Builds a `handler` that decodes `data` with the schema of the message's type and calls that type's handler. A
 * decode failure fails the handler (and so is retried, then stopped or parked).
 *
 * @since 0.1.0
 * @category constructors
 */
export const dispatch: <H extends DispatchHandlers>(
  options: DispatchOptions<H>
) => (
  message: Message
) => Effect.Effect<
  void,
  Effect.Effect.Error<HandlerEffect<H>> | ParseError | UnknownMessageType,
  Effect.Effect.Context<HandlerEffect<H>> | Schema.Schema.Context<H[keyof H][0]>
> = (options) => internal.dispatch(options)
