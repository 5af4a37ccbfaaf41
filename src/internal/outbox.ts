/**
 * `Outbox.write`: validation (before any SQL) and the insert, which takes a transaction lock per stream so that,
 * within a stream, `seq` order is commit order.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash, randomUUID } from "node:crypto"
import type { NewMessage } from "../EventoClient.js"
// Types only: a value import of the public module would make the two modules a cycle, and whichever loads first
// would see the other half-initialised.
import type { Outbox, WriteEntry } from "../Outbox.js"
import { objectProblem, unstorable } from "./json.js"

/** The channel the sender listens on; the payload is the namespace. */
export const channel = "evento_outbox"

/** Re-exported by `Outbox` as `InvalidOutboxMessage`; defined here so this module needs no value from it. */
export class InvalidOutboxMessage extends Schema.TaggedError<InvalidOutboxMessage>()("InvalidOutboxMessage", {
  reason: Schema.Literal(
    "invalid-stream",
    "invalid-type",
    "invalid-data",
    "invalid-metadata",
    "invalid-id",
    "invalid-expected-version",
    "invalid-idempotency-key",
    "invalid-options",
    "too-large"
  ),
  message: Schema.String
}) {}

/** Re-exported by `Outbox` as `InvalidOutboxOptions`. */
export class InvalidOutboxOptions extends Schema.TaggedError<InvalidOutboxOptions>()("InvalidOutboxOptions", {
  reason: Schema.Literal("invalid-namespace", "invalid-max-message-bytes"),
  message: Schema.String
}) {}

/**
 * Checks the settings `make` got: an empty namespace would store rows no sender ever sends, and a limit that is
 * not a positive integer (NaN compares false with everything) would silently turn the size check off.
 */
export const checkOptions = (
  namespace: unknown,
  maxMessageBytes: unknown
): Effect.Effect<{ readonly namespace: string; readonly maxMessageBytes: number }, InvalidOutboxOptions> => {
  if (typeof namespace !== "string" || namespace.length === 0 || unstorable.test(namespace)) {
    return Effect.fail(
      new InvalidOutboxOptions({ reason: "invalid-namespace", message: "namespace must be a non-empty string" })
    )
  }
  if (typeof maxMessageBytes !== "number" || !Number.isSafeInteger(maxMessageBytes) || maxMessageBytes <= 0) {
    return Effect.fail(
      new InvalidOutboxOptions({
        reason: "invalid-max-message-bytes",
        message: `maxMessageBytes must be a positive integer, got ${String(maxMessageBytes)}`
      })
    )
  }
  return Effect.succeed({ namespace, maxMessageBytes })
}

/** A validated entry, encoded for the insert. */
export interface Prepared {
  readonly id: string
  readonly stream: string
  readonly type: string
  readonly data: string
  readonly metadata: string | null
  readonly writeOptions: string | null
  readonly idempotencyKey: string | null
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const textProblem = (value: unknown, name: string): string | undefined =>
  typeof value !== "string" || value.length === 0
    ? `${name} must be a non-empty string`
    : unstorable.test(value)
    ? `${name} holds a NUL character or an unpaired surrogate`
    : undefined

type Reason = InvalidOutboxMessage["reason"]

/** Checks one entry and encodes it; `label` names it in error messages. */
export const prepare = (
  entry: WriteEntry,
  maxMessageBytes: number,
  label: string
): Either.Either<Prepared, InvalidOutboxMessage> => {
  const invalid = (reason: Reason, problem: string) =>
    Either.left(new InvalidOutboxMessage({ reason, message: `${label}: ${problem}` }))
  const message: NewMessage = entry.message
  // Only a cast gets anything but an object or undefined here; a string or array would otherwise pass as "no
  // options" and write a row the caller did not ask for.
  const rawOptions: unknown = entry.options
  if (
    rawOptions !== undefined && (typeof rawOptions !== "object" || rawOptions === null || Array.isArray(rawOptions))
  ) {
    return invalid("invalid-options", "options must be an object")
  }
  const options: NonNullable<WriteEntry["options"]> = entry.options ?? {}

  const streamProblem = textProblem(entry.stream, "stream")
  if (streamProblem !== undefined) return invalid("invalid-stream", streamProblem)
  if (typeof message !== "object" || message === null) return invalid("invalid-type", "message must be an object")
  const typeProblem = textProblem(message.type, "type")
  if (typeProblem !== undefined) return invalid("invalid-type", typeProblem)
  const dataProblem = objectProblem(message.data, "data")
  if (dataProblem !== undefined) return invalid("invalid-data", dataProblem)
  const metadataProblem = message.metadata === undefined ? undefined : objectProblem(message.metadata, "metadata")
  if (metadataProblem !== undefined) return invalid("invalid-metadata", metadataProblem)

  const { expectedVersion, id } = options
  if (id !== undefined && (typeof id !== "string" || !uuidPattern.test(id))) {
    return invalid("invalid-id", "id must be a UUID (8-4-4-4-12 hex digits)")
  }
  if (expectedVersion !== undefined && !(Number.isSafeInteger(expectedVersion) && expectedVersion >= -1)) {
    return invalid("invalid-expected-version", "expectedVersion must be an integer >= -1")
  }
  // The option wins over the data field; a data field that is not a string is not a key.
  const fromData = message.data["idempotency_key"]
  const idempotencyKey = options.idempotencyKey ?? (typeof fromData === "string" ? fromData : undefined)
  if (idempotencyKey !== undefined) {
    const keyProblem = textProblem(idempotencyKey, "idempotencyKey")
    if (keyProblem !== undefined) return invalid("invalid-idempotency-key", keyProblem)
  }

  const data = JSON.stringify(message.data)
  const metadata = message.metadata === undefined ? null : JSON.stringify(message.metadata)
  const bytes = Buffer.byteLength(data, "utf8") + (metadata === null ? 0 : Buffer.byteLength(metadata, "utf8"))
  if (bytes > maxMessageBytes) {
    return invalid("too-large", `data and metadata take ${bytes} bytes of JSON; the limit is ${maxMessageBytes}`)
  }

  return Either.right({
    id: id === undefined ? randomUUID() : id.toLowerCase(),
    stream: entry.stream,
    type: message.type,
    data,
    metadata,
    writeOptions: expectedVersion === undefined ? null : JSON.stringify({ expectedVersion }),
    idempotencyKey: idempotencyKey ?? null
  })
}

/**
 * The advisory-lock key of a stream: md5 of namespace and stream, read as the two 32-bit halves PostgreSQL's
 * two-key lock functions take. That key space is apart from the single 64-bit one `Singleton` uses.
 */
export const streamLockKey = (namespace: string, stream: string): readonly [number, number] => {
  const digest = createHash("md5").update(namespace, "utf8").update("\u0000").update(stream, "utf8").digest()
  return [digest.readInt32BE(0), digest.readInt32BE(4)]
}

const Inserted = Schema.Array(Schema.Struct({ id: Schema.String }))
const Existing = Schema.Array(Schema.Struct({ id: Schema.String, idempotency_key: Schema.String }))
const decode = <A, I>(schema: Schema.Schema<A, I>) => (rows: unknown) =>
  Schema.decodeUnknown(schema)(rows).pipe(Effect.orDie)

// Retries of the insert when a conflicting row vanished between our insert and our lookup (pruned meanwhile).
const maxRounds = 3

/** The statements of a write, on a client without name transforms. */
export const make = (
  client: SqlClient.SqlClient,
  namespace: string,
  maxMessageBytes: number
): Outbox.Service["writeBatch"] => {
  const sql = client.withoutTransforms()

  /**
   * Takes the locks of every stream in the batch, in one global order so that two batches never deadlock. Held to
   * the end of the transaction: a later writer of the stream gets its `seq` only after this one commits.
   */
  const lockStreams = (rows: ReadonlyArray<Prepared>) => {
    const keys = [...new Map(rows.map((row) => {
      const key = streamLockKey(namespace, row.stream)
      return [`${key[0]}:${key[1]}`, key] as const
    })).values()].sort((a, b) => a[0] - b[0] || a[1] - b[1])
    return sql`
      SELECT pg_advisory_xact_lock(k.high, k.low)
      FROM unnest(${keys.map((key) => key[0])}::int4[], ${keys.map((key) => key[1])}::int4[])
        WITH ORDINALITY AS k(high, low, n)
      ORDER BY k.n
    `
  }

  /**
   * Inserts the rows in order (so `seq` follows the batch) and yields the ids of those inserted. A row whose key
   * another row holds, committed or not, is skipped: the unique index makes this insert wait for an uncommitted
   * holder and then skip or insert depending on whether it committed.
   */
  const insert = (rows: ReadonlyArray<Prepared>) =>
    sql`
      INSERT INTO evento_outbox (id, namespace, stream, type, data, metadata, write_options, idempotency_key)
      SELECT r.id, ${namespace}, r.stream, r.type, r.data::jsonb, r.metadata::jsonb, r.write_options::jsonb,
        r.idempotency_key
      FROM unnest(
        ${rows.map((row) => row.id)}::uuid[],
        ${rows.map((row) => row.stream)}::text[],
        ${rows.map((row) => row.type)}::text[],
        ${rows.map((row) => row.data)}::text[],
        ${rows.map((row) => row.metadata)}::text[],
        ${rows.map((row) => row.writeOptions)}::text[],
        ${rows.map((row) => row.idempotencyKey)}::text[]
      ) WITH ORDINALITY AS r(id, stream, type, data, metadata, write_options, idempotency_key, n)
      ORDER BY r.n
      ON CONFLICT (namespace, idempotency_key) DO NOTHING
      RETURNING id::text AS id
    `.pipe(Effect.flatMap(decode(Inserted)), Effect.map((inserted) => new Set(inserted.map((row) => row.id))))

  const existing = (keys: ReadonlyArray<string>) =>
    sql`
      SELECT id::text AS id, idempotency_key
      FROM evento_outbox
      WHERE namespace = ${namespace}
        AND idempotency_key = ANY(${keys}::text[])
    `.pipe(
      Effect.flatMap(decode(Existing)),
      Effect.map((rows) => new Map(rows.map((row) => [row.idempotency_key, row.id])))
    )

  /** Inserts what it can and resolves the rest to the ids already holding their keys. */
  const resolve = (
    rows: ReadonlyArray<Prepared>,
    round: number
  ): Effect.Effect<ReadonlyMap<Prepared, string>, SqlError> =>
    Effect.gen(function*() {
      const inserted = yield* insert(rows)
      const ids = new Map<Prepared, string>()
      const skipped: Array<Prepared> = []
      for (const row of rows) {
        if (inserted.has(row.id)) ids.set(row, row.id)
        else skipped.push(row)
      }
      if (skipped.length === 0) return ids

      // Only a key conflict skips a row, so every skipped row has a key. In READ COMMITTED this new statement sees
      // the holder that made the insert skip; it can miss it only if the row was deleted in between.
      const holders = yield* existing(skipped.map((row) => row.idempotencyKey ?? ""))
      const orphans = skipped.filter((row) => !holders.has(row.idempotencyKey ?? ""))
      for (const row of skipped) {
        const holder = holders.get(row.idempotencyKey ?? "")
        if (holder !== undefined) ids.set(row, holder)
      }
      if (orphans.length === 0) return ids
      if (round >= maxRounds) {
        return yield* new SqlError({
          message: "Outbox rows holding the idempotency keys vanished while writing; giving up",
          cause: orphans.map((row) => row.idempotencyKey)
        })
      }
      const retried = yield* resolve(orphans, round + 1)
      for (const [row, id] of retried) ids.set(row, id)
      return ids
    })

  const writeRows = (rows: ReadonlyArray<Prepared>) =>
    Effect.gen(function*() {
      yield* lockStreams(rows)
      const ids = yield* resolve(rows, 1)
      const written = rows.filter((row) => ids.get(row) === row.id).length
      // Delivered at commit, and not at all on rollback.
      if (written > 0) yield* sql`SELECT pg_notify(${channel}, ${namespace})`
      return rows.map((row) => ids.get(row) ?? row.id)
    })

  // Joins the caller's transaction; otherwise the locks need one of their own to be held until the insert commits.
  const inTransaction = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.flatMap(
      Effect.serviceOption(SqlClient.TransactionConnection),
      Option.match({ onNone: () => ownTransaction(effect), onSome: () => effect })
    )

  // `withTransaction` turns a failed COMMIT or ROLLBACK (a lost connection, typically) into a defect carrying the
  // SqlError. In a transaction of our own that is just a failed write, and callers retry on SqlError; any other
  // defect stays one.
  const ownTransaction = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
    sql.withTransaction(effect).pipe(
      Effect.catchAllCause((cause) => {
        const defects = [...Cause.defects(cause)]
        const failed = Cause.failureOption(cause)
        if (
          defects.length === 0 || Cause.isInterrupted(cause) || !defects.every((defect) => defect instanceof SqlError)
        ) {
          return Effect.failCause(cause)
        }
        return Option.isSome(failed) ? Effect.fail(failed.value) : Effect.fail(defects[0] as SqlError)
      })
    )

  return (entries) =>
    Effect.gen(function*() {
      const rows: Array<Prepared> = []
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!
        rows.push(yield* prepare(entry, maxMessageBytes, entries.length === 1 ? "message" : `entry ${i}`))
      }
      if (rows.length === 0) return []
      return yield* inTransaction(writeRows(rows))
    })
}
