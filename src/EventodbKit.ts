/**
 * Every service of eventodb-kit in one layer, for applications that want one line: an `EventoClient` on undici, a
 * `PgClient` (and `SqlClient`) pool, `Outbox`, `PositionStore` and `Idempotency` on that pool, `Singleton` on
 * PostgreSQL advisory locks, the schema migrated to the latest version and the `OutboxSender` running.
 *
 * What happens when the layer is built, in order:
 * 1. the `PgClient` pool opens and the `EventoClient` decodes its namespace from the token;
 * 2. `Migrations.up()` runs, unless `migrate` is false. It is safe with any number of processes starting at once
 *    (an advisory lock) and refuses a database recorded at a newer version than this library knows;
 * 3. `Outbox`, `PositionStore`, `Idempotency` and `Singleton` are built;
 * 4. `OutboxSender.layer` starts, unless `sender` is false: every process competes for the `Singleton` name
 *    `outbox-sender:<namespace>` and exactly one sends;
 * 5. `Cleanup.layer` starts when `cleanup` is set (it is off by default), under the `Singleton` name `cleanup:...`.
 *
 * Closing the layer stops the sender and the cleanup (releasing their locks) and closes the pool. Consumers are the application's own:
 * put `Consumer.layer(...)` on top of this layer.
 *
 * @example
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import { Consumer, EventodbKit } from "eventodb-kit"
 *
 * const Projection = Consumer.layer({
 *   category: "account",
 *   consumerId: "projection",
 *   handler: (message) => Effect.log("handled", message.type)
 * })
 *
 * // reads EVENTODB_URL, EVENTODB_TOKEN and DATABASE_URL
 * Layer.launch(Projection.pipe(Layer.provide(EventodbKit.layerConfig()))).pipe(NodeRuntime.runMain)
 * ```
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Cleanup from "./Cleanup.js"
import * as EventoClient from "./EventoClient.js"
import type { EventoAuthError, InvalidRequest } from "./EventoError.js"
import * as Idempotency from "./Idempotency.js"
import * as Migrations from "./Migrations.js"
import * as Outbox from "./Outbox.js"
import * as OutboxSender from "./OutboxSender.js"
import * as PositionStore from "./PositionStore.js"
import * as Singleton from "./Singleton.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Where EventoDB is and the namespace's token (`EventoClient.layer`'s options). */
  readonly evento: EventoClient.Options
  /**
   * The application's PostgreSQL (`PgClient.layer`'s options, e.g. `{ url: Redacted.make("postgres://...") }`).
   * Leave `transformResultNames` unset: the kit's statements read snake_case column names.
   */
  readonly database: PgClient.PgClientConfig
  /** `Outbox.layer`'s options. Default: the client's namespace, 1 MiB per message. */
  readonly outbox?: Outbox.Options | undefined
  /** Run `Migrations.up()` while the layer is built. Default: true. */
  readonly migrate?: boolean | undefined
  /**
   * Start `OutboxSender.layer` with these options (`true`: its defaults), or not at all (`false`, e.g. in a process
   * that only writes while others send). Default: true.
   */
  readonly sender?: boolean | OutboxSender.Options | undefined
  /**
   * Start `Cleanup.layer` with these options (`true`: its defaults: sent rows and marks kept 7 days, every
   * namespace, hourly), which prunes sent outbox rows and old processed marks. Default: false (nothing is deleted
   * unless asked for).
   */
  readonly cleanup?: boolean | Cleanup.Options | undefined
}

/**
 * The services the layer provides.
 *
 * @since 0.1.0
 * @category models
 */
export type Services =
  | EventoClient.EventoClient
  | PgClient.PgClient
  | SqlClient.SqlClient
  | Outbox.Outbox
  | PositionStore.PositionStore
  | Idempotency.Idempotency
  | Singleton.Singleton

/**
 * What building the layer can fail with: a token that does not parse, an unusable EventoDB URL or timeout
 * (`InvalidRequest`), a database that cannot be reached or migrated, outbox options `Outbox.layer` refuses
 * (`InvalidOutboxOptions`).
 *
 * @since 0.1.0
 * @category errors
 */
export type LayerError =
  | EventoAuthError
  | InvalidRequest
  | SqlError
  | Migrations.MigrationsError
  | Outbox.InvalidOutboxOptions

/**
 * The one layer, from options. The `EventoClient` uses `NodeHttpClient.layerUndici`, which never times out a quiet
 * subscription.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Services, LayerError> => {
  const clients = Layer.merge(
    PgClient.layer(options.database),
    EventoClient.layer(options.evento).pipe(Layer.provide(NodeHttpClient.layerUndici))
  )
  // Each `Layer.provideMerge` builds its argument first: the schema exists before any service or the sender uses it.
  const migrated = options.migrate === false ? clients : Layer.effectDiscard(
    Migrations.up().pipe(
      Effect.tap((version) => Effect.logDebug("EventodbKit schema ready").pipe(Effect.annotateLogs({ version })))
    )
  ).pipe(Layer.provideMerge(clients))
  const services = Layer.mergeAll(
    Outbox.layer(options.outbox),
    PositionStore.layer,
    Idempotency.layer,
    Singleton.layer
  ).pipe(Layer.provideMerge(migrated))
  const sender = options.sender ?? true
  const cleanup = options.cleanup ?? false
  const workers = Layer.mergeAll(
    sender === false ? Layer.empty : OutboxSender.layer(sender === true ? undefined : sender),
    cleanup === false ? Layer.empty : Cleanup.layer(cleanup === true ? undefined : cleanup)
  )
  return workers.pipe(Layer.provideMerge(services))
}

/**
 * The configuration `layerConfig` reads by default:
 * - `EVENTODB_URL` (default `http://127.0.0.1:8080`), `EVENTODB_TOKEN` (required), `EVENTODB_TIMEOUT` (10 seconds):
 *   `EventoClient.defaultConfig`;
 * - `DATABASE_URL` (required, redacted);
 * - `EVENTODB_MIGRATE` (boolean, default true);
 * - `EVENTODB_OUTBOX_SENDER` (boolean, default true) and the sender's keys of `OutboxSender.defaultConfig`
 *   (`EVENTODB_OUTBOX_POLL_INTERVAL`, `..._BATCH_SIZE`, `..._CONCURRENCY`, `..._MAX_ATTEMPTS`,
 *   `..._BACKOFF_INITIAL`, `..._BACKOFF_MAX`);
 * - `EVENTODB_OUTBOX_NAMESPACE` and `EVENTODB_OUTBOX_MAX_MESSAGE_BYTES`: `Outbox.defaultConfig`;
 * - `EVENTODB_CLEANUP` (boolean, default false) and the keys of `Cleanup.defaultConfig` (`EVENTODB_CLEANUP_NAMESPACE`,
 *   `..._SENT_RETENTION`, `..._MARK_RETENTION`, `..._MARK_WINDOW`, `..._BATCH_SIZE`, `..._INTERVAL`).
 *
 * @since 0.1.0
 * @category config
 */
export const defaultConfig: Config.Config<Options> = Config.all({
  evento: EventoClient.defaultConfig,
  database: Config.all({
    url: Config.redacted("DATABASE_URL").pipe(
      Config.withDescription("PostgreSQL connection URL of the application's database")
    )
  }),
  outbox: Config.unwrap(Outbox.defaultConfig),
  migrate: Config.boolean("EVENTODB_MIGRATE").pipe(
    Config.withDefault(true),
    Config.withDescription("Migrate the eventodb-kit tables to the latest version when the layer starts")
  ),
  sender: Config.all({
    on: Config.boolean("EVENTODB_OUTBOX_SENDER").pipe(
      Config.withDefault(true),
      Config.withDescription("Run the outbox sender in this process (one process per namespace sends at a time)")
    ),
    options: OutboxSender.defaultConfig
  }).pipe(Config.map(({ on, options }): boolean | OutboxSender.Options => on ? options : false)),
  cleanup: Config.all({
    on: Config.boolean("EVENTODB_CLEANUP").pipe(
      Config.withDefault(false),
      Config.withDescription("Run the cleanup worker (prunes sent outbox rows and old processed marks)")
    ),
    options: Cleanup.defaultConfig
  }).pipe(Config.map(({ on, options }): boolean | Cleanup.Options => on ? options : false))
})

/**
 * The one layer, from configuration (by default `defaultConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options> = defaultConfig
): Layer.Layer<Services, LayerError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
