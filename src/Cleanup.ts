/**
 * Keeps the kit's tables from growing forever (LESSONS.md 8): removes sent outbox rows after a retention, and
 * processed-event marks once deduplication can no longer need them.
 *
 * What goes, and what never does:
 * - An outbox row goes when it was sent longer ago than `sentRetention`. Unsent rows and parked rows never go.
 *   An outbox idempotency key lives as long as its row: a key written again after its row was removed is accepted
 *   as new, so keep `sentRetention` longer than any producer may retry a write.
 * - A processed mark goes when it is older than `markRetention` and its global position is below its consumer's
 *   saved position minus `markWindow`. The consumer resumes after its saved position, so such a mark can only be
 *   met again after a `reset` further back than the window. Marks written by version 1 of the schema carry no
 *   global position and go by age alone. A mark of a consumer with no saved position never goes.
 * - Consumer positions and parked consumer messages are never touched.
 *
 * `Idempotency.cleanup` is the same mark rule with no window, no namespace filter and one statement; this worker
 * deletes in bounded batches, so a large backlog never becomes one long transaction.
 *
 * @example
 * ```ts
 * import { Cleanup } from "eventodb-kit"
 *
 * // one cleanup per namespace across every process, every hour, started and stopped with the layer
 * const CleanupLive = Cleanup.layer({ namespace: "shop", sentRetention: "3 days" })
 * ```
 *
 * @since 0.1.0
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as internal from "./internal/cleanup.js"
import { Singleton } from "./Singleton.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Prune only this namespace's rows and marks. Default: every namespace in the database. */
  readonly namespace?: string | undefined
  /** Sent outbox rows whose `sent_at` is older than this are removed. Default: 7 days. */
  readonly sentRetention?: Duration.DurationInput | undefined
  /** Processed marks whose `processed_at` is older than this may be removed (see the module notes). Default: 7 days. */
  readonly markRetention?: Duration.DurationInput | undefined
  /**
   * A mark goes only when its global position is below its consumer's saved position minus this many positions.
   * Negative values count as 0. Default: 10000.
   */
  readonly markWindow?: number | undefined
  /** Rows removed per statement. Default: 5000. */
  readonly batchSize?: number | undefined
  /** `run` and `layer`: the pause between passes; the first pass starts at once. Default: 1 hour. */
  readonly interval?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface OnceOptions extends Options {
  /** Count what a pass would remove, and remove nothing. Default: false. */
  readonly dryRun?: boolean | undefined
}

/**
 * What a pass removed in one namespace.
 *
 * @since 0.1.0
 * @category models
 */
export interface Removed {
  readonly namespace: string
  readonly sentRows: number
  readonly marks: number
}

/**
 * What a pass removed (or, in a dry run, would remove).
 *
 * @since 0.1.0
 * @category models
 */
export interface Result {
  /** Sent outbox rows, in all namespaces. */
  readonly sentRows: number
  /** Processed marks, in all namespaces. */
  readonly marks: number
  /** Per namespace, sorted by name; a namespace with nothing removed is left out. */
  readonly namespaces: ReadonlyArray<Removed>
}

/**
 * The cleanup's counters, `eventodb_cleanup_outbox_removed_total` and `eventodb_cleanup_marks_removed_total`, each
 * tagged `namespace`.
 *
 * @since 0.1.0
 * @category models
 */
export const metrics = internal.metrics

/**
 * The `Singleton` name `layer` competes for: `cleanup:<namespace>`, or `cleanup:*` without a namespace.
 *
 * @since 0.1.0
 * @category models
 */
export const singletonName: (namespace?: string | undefined) => string = internal.singletonName

/**
 * One pass: removes sent outbox rows, then old marks, batch after batch until none is left (the CLI's `cleanup`).
 * Safe to run while senders, consumers and other cleanups run.
 *
 * @since 0.1.0
 * @category accessors
 */
export const once: (options?: OnceOptions) => Effect.Effect<Result, SqlError, SqlClient> = Effect.fn("Cleanup.once")(
  function*(options?: OnceOptions) {
    return yield* internal.once(options)
  }
)

/**
 * A pass at once and then one every `interval`, forever. A failed pass is logged at warning level and the next
 * one tries again; it never fails. Several may run at once (`layer` keeps it to one per name).
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (options?: Options): Effect.Effect<never, never, SqlClient> => internal.run(options)

/**
 * Runs `run` in the layer's scope under the `Singleton` name `singletonName(options.namespace)`: with any number of
 * processes, one cleans.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<never, never, SqlClient | Singleton> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const singleton = yield* Singleton
    yield* singleton.run(internal.singletonName(options?.namespace), run(options)).pipe(
      Effect.interruptible,
      Effect.forkScoped
    )
  }))

/**
 * The configuration `layerConfig` reads by default: `EVENTODB_CLEANUP_NAMESPACE` (optional),
 * `EVENTODB_CLEANUP_SENT_RETENTION`, `EVENTODB_CLEANUP_MARK_RETENTION`, `EVENTODB_CLEANUP_MARK_WINDOW`,
 * `EVENTODB_CLEANUP_BATCH_SIZE` and `EVENTODB_CLEANUP_INTERVAL`, each with the default of `Options`.
 *
 * @since 0.1.0
 * @category config
 */
export const defaultConfig: Config.Config<Options> = Config.all({
  namespace: Config.string("EVENTODB_CLEANUP_NAMESPACE").pipe(
    Config.withDescription("Namespace whose rows cleanup prunes; unset: every namespace"),
    Config.option,
    Config.map(Option.getOrUndefined)
  ),
  sentRetention: Config.duration("EVENTODB_CLEANUP_SENT_RETENTION").pipe(
    Config.withDefault(internal.defaults.sentRetention),
    Config.withDescription("How long sent outbox rows are kept")
  ),
  markRetention: Config.duration("EVENTODB_CLEANUP_MARK_RETENTION").pipe(
    Config.withDefault(internal.defaults.markRetention),
    Config.withDescription("How long processed-event marks are kept at least")
  ),
  markWindow: Config.integer("EVENTODB_CLEANUP_MARK_WINDOW").pipe(
    Config.withDefault(internal.defaults.markWindow),
    Config.withDescription("Global positions below a consumer's saved position within which marks are kept")
  ),
  batchSize: Config.integer("EVENTODB_CLEANUP_BATCH_SIZE").pipe(
    Config.withDefault(internal.defaults.batchSize),
    Config.withDescription("Rows cleanup removes per statement")
  ),
  interval: Config.duration("EVENTODB_CLEANUP_INTERVAL").pipe(
    Config.withDefault(internal.defaults.interval),
    Config.withDescription("Pause between cleanup passes")
  )
})

/**
 * `layer` with options from configuration (by default `defaultConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options> = defaultConfig
): Layer.Layer<never, ConfigError.ConfigError, SqlClient | Singleton> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
