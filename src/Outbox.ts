/**
 * The transactional outbox: `write` stores an event in the application's own PostgreSQL, inside the caller's
 * `sql.withTransaction`, so the event exists exactly when the business change commits. `OutboxSender` ships it to
 * EventoDB later, with the outbox id as the message id.
 *
 * Within a stream, rows are numbered (`seq`) in commit order: each write takes a transaction lock on its
 * (namespace, stream) before inserting, so a second writer of the stream waits for the first to commit. Writes to
 * different streams do not wait for each other.
 *
 * An idempotency key (the `idempotencyKey` option, else a string `data.idempotency_key`) makes a write happen once
 * per namespace: a later write with the same key writes nothing and yields the first row's id, also when the two
 * race in concurrent transactions (the second waits for the first to commit or roll back). In a REPEATABLE READ or
 * SERIALIZABLE transaction such a race fails with a serialization error instead; retry the transaction.
 *
 * @example
 * ```ts
 * import { Outbox } from "eventodb-kit"
 * import * as SqlClient from "@effect/sql/SqlClient"
 * import * as Effect from "effect/Effect"
 *
 * const openAccount = (id: string) =>
 *   Effect.gen(function*() {
 *     const sql = yield* SqlClient.SqlClient
 *     yield* sql.withTransaction(Effect.gen(function*() {
 *       yield* sql`INSERT INTO accounts (id) VALUES (${id})`
 *       yield* Outbox.write(`account-${id}`, { type: "Opened", data: { id } }, { expectedVersion: -1 })
 *     }))
 *   })
 * ```
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { EventoClient, type NewMessage } from "./EventoClient.js"
import * as internal from "./internal/outbox.js"

/**
 * An entry `write` refused before touching the database, and why (`reason`: `invalid-stream`, `invalid-type`,
 * `invalid-data`, `invalid-metadata`, `invalid-id`, `invalid-expected-version`, `invalid-idempotency-key`,
 * `invalid-options` for options that are not an object, `too-large`).
 *
 * @since 0.1.0
 * @category errors
 */
export const InvalidOutboxMessage: typeof internal.InvalidOutboxMessage = internal.InvalidOutboxMessage

/**
 * @since 0.1.0
 * @category errors
 */
export type InvalidOutboxMessage = internal.InvalidOutboxMessage

/**
 * Settings `make` / `layer` refused, and why: `invalid-namespace` (empty, or not a string: its rows would never be
 * sent) or `invalid-max-message-bytes` (not a positive integer: NaN or 0 would turn the size check off or refuse
 * everything).
 *
 * @since 0.1.0
 * @category errors
 */
export const InvalidOutboxOptions: typeof internal.InvalidOutboxOptions = internal.InvalidOutboxOptions

/**
 * @since 0.1.0
 * @category errors
 */
export type InvalidOutboxOptions = internal.InvalidOutboxOptions

/**
 * @since 0.1.0
 * @category models
 */
export interface WriteOptions {
  /**
   * Sent with the message: EventoDB writes it only if the stream's version (last position, -1 for none) is this.
   * Stored as `write_options = {"expectedVersion": N}`. Default: no check.
   */
  readonly expectedVersion?: number | undefined
  /**
   * The outbox id, which becomes the message id (a UUID, stored lower case). An id already in the outbox fails the
   * write with a unique-violation `SqlError`; use `idempotencyKey` for writes that may repeat. Default: a random
   * UUID.
   */
  readonly id?: string | undefined
  /** Writes once per namespace under this key. Default: `data.idempotency_key` when it is a string, else none. */
  readonly idempotencyKey?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface WriteEntry {
  readonly stream: string
  readonly message: NewMessage
  readonly options?: WriteOptions | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Outbox {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** The namespace rows are written for. */
    readonly namespace: string
    /**
     * Stores one message for `stream` and yields its outbox id (the message id EventoDB will get), or the id of the
     * row already holding its idempotency key. Joins the caller's transaction, else runs in one of its own.
     */
    readonly write: (
      stream: string,
      message: NewMessage,
      options?: WriteOptions
    ) => Effect.Effect<string, InvalidOutboxMessage | SqlError>
    /**
     * Stores the entries in order (their `seq` follows the array) and yields their ids, in the same order. Every
     * entry is checked before anything is written; one invalid entry writes none.
     */
    readonly writeBatch: (
      entries: ReadonlyArray<WriteEntry>
    ) => Effect.Effect<ReadonlyArray<string>, InvalidOutboxMessage | SqlError>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export class Outbox extends Context.Tag("eventodb-kit/Outbox")<Outbox, Outbox.Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The namespace to write rows for. Default: the `EventoClient`'s (decoded from its token). */
  readonly namespace?: string | undefined
  /** The largest `data` plus `metadata` accepted, in UTF-8 bytes of their JSON. Default: 1 MiB (1048576). */
  readonly maxMessageBytes?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export const defaultMaxMessageBytes = 1024 * 1024

/**
 * The channel `write` notifies (with the namespace as payload) when its transaction commits.
 *
 * @since 0.1.0
 * @category models
 */
export const channel: string = internal.channel

/**
 * Builds the service on the `SqlClient` in context; the namespace comes from `options.namespace`, else from the
 * `EventoClient` (which is never called). With a namespace given, no `EventoClient` is needed. Fails with
 * `InvalidOutboxOptions` for an empty namespace or a `maxMessageBytes` that is not a positive integer.
 *
 * @since 0.1.0
 * @category constructors
 */
export function make(
  options: Options & { readonly namespace: string }
): Effect.Effect<Outbox.Service, InvalidOutboxOptions, SqlClient.SqlClient>
export function make(
  options?: Options
): Effect.Effect<Outbox.Service, InvalidOutboxOptions, SqlClient.SqlClient | EventoClient>
export function make(
  options?: Options
): Effect.Effect<Outbox.Service, InvalidOutboxOptions, SqlClient.SqlClient | EventoClient> {
  return Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { maxMessageBytes, namespace } = yield* internal.checkOptions(
      options?.namespace ?? (yield* EventoClient).namespace,
      options?.maxMessageBytes ?? defaultMaxMessageBytes
    )
    const writeBatch = internal.make(sql, namespace, maxMessageBytes)
    return Outbox.of({
      namespace,
      write: Effect.fn("Outbox.write")(function*(stream: string, message: NewMessage, options?: WriteOptions) {
        const [id] = yield* writeBatch([{ stream, message, options }])
        return id!
      }),
      writeBatch: Effect.fn("Outbox.writeBatch")(function*(entries: ReadonlyArray<WriteEntry>) {
        return yield* writeBatch(entries)
      })
    })
  })
}

/**
 * @since 0.1.0
 * @category layers
 */
export function layer(
  options: Options & { readonly namespace: string }
): Layer.Layer<Outbox, InvalidOutboxOptions, SqlClient.SqlClient>
export function layer(
  options?: Options
): Layer.Layer<Outbox, InvalidOutboxOptions, SqlClient.SqlClient | EventoClient>
export function layer(
  options?: Options
): Layer.Layer<Outbox, InvalidOutboxOptions, SqlClient.SqlClient | EventoClient> {
  return Layer.effect(Outbox, make(options))
}

/**
 * Reads `EVENTODB_OUTBOX_NAMESPACE` (default: the client's namespace) and `EVENTODB_OUTBOX_MAX_MESSAGE_BYTES`
 * (default: 1048576) unless given another config.
 *
 * @since 0.1.0
 * @category config
 */
export const defaultConfig: Config.Config.Wrap<Options> = {
  namespace: Config.string("EVENTODB_OUTBOX_NAMESPACE").pipe(
    Config.withDefault(undefined),
    Config.withDescription("The namespace outbox rows are written for; default: the EventoDB token's")
  ),
  maxMessageBytes: Config.integer("EVENTODB_OUTBOX_MAX_MESSAGE_BYTES").pipe(
    Config.withDefault(defaultMaxMessageBytes),
    Config.withDescription("The largest data plus metadata accepted by Outbox.write, in UTF-8 bytes of JSON")
  )
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options> = defaultConfig
): Layer.Layer<Outbox, ConfigError.ConfigError | InvalidOutboxOptions, SqlClient.SqlClient | EventoClient> =>
  Layer.effect(Outbox, Effect.flatMap(Config.unwrap(config), (options) => make(options)))

/**
 * @since 0.1.0
 * @category accessors
 */
export const write = (
  stream: string,
  message: NewMessage,
  options?: WriteOptions
): Effect.Effect<string, InvalidOutboxMessage | SqlError, Outbox> =>
  Effect.flatMap(Outbox, (outbox) => outbox.write(stream, message, options))

/**
 * @since 0.1.0
 * @category accessors
 */
export const writeBatch = (
  entries: ReadonlyArray<WriteEntry>
): Effect.Effect<ReadonlyArray<string>, InvalidOutboxMessage | SqlError, Outbox> =>
  Effect.flatMap(Outbox, (outbox) => outbox.writeBatch(entries))
