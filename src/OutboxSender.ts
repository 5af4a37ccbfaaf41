/**
 * Ships the rows `Outbox.write` stored to EventoDB: each row with its outbox id as the message id and its stored
 * `expectedVersion`, the rows of one stream strictly in `seq` order, the streams in parallel.
 *
 * Failures are classified. EventoDB unreachable, timing out or answering 5xx while down: the sender backs off and
 * no row's attempts are counted. A row whose own sends keep failing with 5xx is parked after `maxAttempts`. The
 * duplicate-id answer means "delivered before" (a crash between send and mark). A version conflict is checked
 * against the stream: if the message at `expectedVersion + 1` has the row's id, it was ours. Otherwise the conflict,
 * like an invalid request, parks the row at once. A refused token pauses the whole sender, with an error-level log,
 * and parks nothing. A parked row blocks the rest of its stream until an operator calls `requeue` or `discard`.
 *
 * @example
 * ```ts
 * import { OutboxSender } from "eventodb-kit"
 *
 * // one sender per namespace across every process, started and stopped with the layer
 * const SenderLive = OutboxSender.layer({ concurrency: 16 })
 * ```
 *
 * @since 0.1.0
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import { EventoClient } from "./EventoClient.js"
import type { EventoError } from "./EventoError.js"
import * as internal from "./internal/sender.js"
import { Singleton } from "./Singleton.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface BackoffOptions {
  /** The first delay. Default: 200 milliseconds. */
  readonly initial?: Duration.DurationInput | undefined
  /** No delay is longer. Default: 30 seconds. */
  readonly max?: Duration.DurationInput | undefined
  /** Each delay is this many times the one before. Default: 2. */
  readonly factor?: number | undefined
  /** Scale each delay by a random factor between 0.8 and 1.2, so many senders do not retry in step. Default: true. */
  readonly jitter?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * How often to look for sendable rows when no notification came. It runs even while `LISTEN` works, because a
   * `LISTEN` connection can stop delivering without an error. Default: 1 second.
   */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** Rows read per query. Default: 100. */
  readonly batchSize?: number | undefined
  /** Streams sent in parallel. Default: 8. */
  readonly concurrency?: number | undefined
  /** A row whose own sends failed this many times (5xx while EventoDB otherwise answers) is parked. Default: 10. */
  readonly maxAttempts?: number | undefined
  /** Delays between a row's retries, and while EventoDB is unreachable or refuses the token. */
  readonly backoff?: BackoffOptions | undefined
}

/**
 * Sends the rows of the `EventoClient`'s namespace, forever: on every `Outbox.write` notification
 * (`LISTEN evento_outbox`, when a `PgClient` is in the context), every `pollInterval`, and when a row's backoff runs
 * out. Nothing it meets makes it fail; it logs and backs off instead. Interrupting it lets the current batch mark
 * what EventoDB accepted; a send cut off mid-flight is sent again later and recognised by its message id.
 *
 * Run one sender per namespace (`layer` sees to that): ordering holds per sender.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (options?: Options): Effect.Effect<never, never, EventoClient | SqlClient> => internal.run(options)

/**
 * Runs the sender of the `EventoClient`'s namespace in the layer's scope, under the `Singleton` name
 * `outbox-sender:<namespace>`: with any number of processes, exactly one sends.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<never, never, EventoClient | SqlClient | Singleton> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const client = yield* EventoClient
    const singleton = yield* Singleton
    yield* singleton.run(internal.singletonName(client.namespace), run(options)).pipe(
      Effect.interruptible,
      Effect.forkScoped
    )
  }))

/**
 * The configuration `layerConfig` reads by default: `EVENTODB_OUTBOX_POLL_INTERVAL`,
 * `EVENTODB_OUTBOX_BATCH_SIZE`, `EVENTODB_OUTBOX_CONCURRENCY`, `EVENTODB_OUTBOX_MAX_ATTEMPTS`,
 * `EVENTODB_OUTBOX_BACKOFF_INITIAL` and `EVENTODB_OUTBOX_BACKOFF_MAX`, each with the default of `Options`.
 *
 * @since 0.1.0
 * @category config
 */
export const defaultConfig: Config.Config<Options> = Config.all({
  pollInterval: Config.duration("EVENTODB_OUTBOX_POLL_INTERVAL").pipe(
    Config.withDefault(Duration.seconds(1)),
    Config.withDescription("How often the outbox sender polls when no notification came")
  ),
  batchSize: Config.integer("EVENTODB_OUTBOX_BATCH_SIZE").pipe(
    Config.withDefault(100),
    Config.withDescription("Outbox rows read per query")
  ),
  concurrency: Config.integer("EVENTODB_OUTBOX_CONCURRENCY").pipe(
    Config.withDefault(8),
    Config.withDescription("Streams the outbox sender sends in parallel")
  ),
  maxAttempts: Config.integer("EVENTODB_OUTBOX_MAX_ATTEMPTS").pipe(
    Config.withDefault(10),
    Config.withDescription("Failed sends after which an outbox row is parked")
  ),
  backoff: Config.all({
    initial: Config.duration("EVENTODB_OUTBOX_BACKOFF_INITIAL").pipe(
      Config.withDefault(Duration.millis(200)),
      Config.withDescription("First retry delay of the outbox sender")
    ),
    max: Config.duration("EVENTODB_OUTBOX_BACKOFF_MAX").pipe(
      Config.withDefault(Duration.seconds(30)),
      Config.withDescription("Longest retry delay of the outbox sender")
    )
  })
})

/**
 * `layer` with options from configuration (by default `defaultConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options> = defaultConfig
): Layer.Layer<never, ConfigError.ConfigError, EventoClient | SqlClient | Singleton> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))

/**
 * Sends until nothing is sendable (rows waiting for their backoff or parked are not), with the default options;
 * the count delivered. Fails with the `EventoError` that stopped it when EventoDB is unreachable or refuses the
 * token (no row's attempts are counted then), or with the `SqlError` of the database. Not for use while a sender
 * of the same namespace runs: ordering holds per sender.
 *
 * @since 0.1.0
 * @category accessors
 */
export const drain: Effect.Effect<number, EventoError | SqlError, EventoClient | SqlClient> = Effect.suspend(() =>
  drainWith()
)

/**
 * `drain` with options (`pollInterval` is not used).
 *
 * @since 0.1.0
 * @category accessors
 */
export const drainWith: (options?: Options) => Effect.Effect<number, EventoError | SqlError, EventoClient | SqlClient> =
  Effect.fn("OutboxSender.drain")(function*(options?: Options) {
    const sender = yield* internal.make(options)
    const sent = yield* sender.pass.pipe(Effect.catchTag("Halted", (halted) => Effect.fail(halted.error)))
    yield* sender.stats
    return sent
  })

/**
 * The backlog of a namespace.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backlog {
  /** Rows not yet delivered, parked ones included. */
  readonly unsent: number
  /** Rows parked, waiting for `requeue` or `discard`. */
  readonly parked: number
  /** Unparked rows that failed at least once and wait for their next attempt. */
  readonly retrying: number
  readonly oldestUnsentAt: Option.Option<Date>
  /** Measured on the database's clock. */
  readonly oldestUnsentAge: Option.Option<Duration.Duration>
}

/**
 * The backlog of `namespace` (what the CLI's `status` shows). A running sender publishes the same figures after each
 * pass as the gauges `eventodb_outbox_backlog`, `eventodb_outbox_parked` and `eventodb_outbox_oldest_unsent_age_seconds`,
 * and counts rows as they go in `eventodb_outbox_sent_total` and `eventodb_outbox_parked_total`, all tagged `namespace`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const backlog: (namespace: string) => Effect.Effect<Backlog, SqlError, SqlClient> = Effect.fn(
  "OutboxSender.backlog"
)(function*(namespace: string) {
  const s = yield* internal.stats(namespace)
  return {
    unsent: s.unsent,
    parked: s.parked,
    retrying: s.retrying,
    oldestUnsentAt: s.oldestUnsentAt,
    oldestUnsentAge: s.oldestUnsentAge
  }
})

/**
 * A parked row, with the error that parked it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ParkedRow {
  readonly id: string
  readonly stream: string
  readonly type: string
  readonly seq: number
  readonly attempts: number
  /** `last_error` as stored: the JSON of an `EventoError`, or a plain message. */
  readonly lastError: Option.Option<string>
  /** `lastError` decoded, when it is an `EventoError`. */
  readonly error: Option.Option<EventoError>
  readonly createdAt: Date
  readonly parkedAt: Date
}

/**
 * The parked rows of `namespace`, oldest first. Option `limit` defaults to 100.
 *
 * @since 0.1.0
 * @category accessors
 */
export const parked: (
  namespace: string,
  options?: { readonly limit?: number | undefined }
) => Effect.Effect<ReadonlyArray<ParkedRow>, SqlError, SqlClient> = Effect.fn("OutboxSender.parked")(
  function*(namespace: string, options?: { readonly limit?: number | undefined }) {
    return yield* internal.parked(namespace, options?.limit ?? 100)
  }
)

/**
 * Makes the given unsent rows sendable now, parked or waiting for their backoff, with their attempts starting
 * over, and wakes their senders. The count changed (sent and unknown ids are left alone). For operators (the
 * CLI's `outbox requeue`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const requeue: (ids: ReadonlyArray<string>) => Effect.Effect<number, SqlError, SqlClient> = Effect.fn(
  "OutboxSender.requeue"
)(function*(ids: ReadonlyArray<string>) {
  return yield* internal.requeue(ids)
})

/**
 * Deletes the given parked rows, so the later rows of their streams go on without them, and wakes their senders.
 * The count deleted (rows that are not parked are left alone). For operators (the CLI's `outbox discard`).
 *
 * @since 0.1.0
 * @category accessors
 */
export const discard: (ids: ReadonlyArray<string>) => Effect.Effect<number, SqlError, SqlClient> = Effect.fn(
  "OutboxSender.discard"
)(function*(ids: ReadonlyArray<string>) {
  return yield* internal.discard(ids)
})
