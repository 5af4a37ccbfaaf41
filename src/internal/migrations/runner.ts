import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import type { MigrationsError } from "../../Migrations.js"
import * as v1 from "./v1.js"
import * as v2 from "./v2.js"

/** @internal */
export interface Step {
  readonly version: number
  readonly name: string
  readonly up: Effect.Effect<void, SqlError, SqlClient.SqlClient>
  readonly down: Effect.Effect<void, SqlError, SqlClient.SqlClient>
}

/** @internal */
export const steps: ReadonlyArray<Step> = [
  { version: 1, name: v1.name, up: v1.up, down: v1.down },
  { version: 2, name: v2.name, up: v2.up, down: v2.down }
]

/** @internal */
export const latestVersion = steps.length

/**
 * The transaction lock every migration run takes: the first 8 bytes of md5 of a fixed name, as a signed 64-bit
 * integer, the same derivation `Singleton` uses for its names.
 *
 * @internal
 */
export const lockKey = createHash("md5").update("eventodb-kit/migrations", "utf8").digest().readBigInt64BE(0)
  .toString()

type Fail = (reason: MigrationsError["reason"], message: string) => Effect.Effect<never, MigrationsError>

const Version = Schema.Struct({ version: Schema.NullOr(Schema.Number) })
const Exists = Schema.Struct({ migrations: Schema.Boolean, parked: Schema.Boolean })
const Column = Schema.Struct({
  table_name: Schema.String,
  column_name: Schema.String,
  column_type: Schema.String,
  not_null: Schema.Boolean
})
type Column = typeof Column.Type

const decode = <A, I>(schema: Schema.Schema<A, I>) => (rows: unknown) =>
  Schema.decodeUnknown(schema)(rows).pipe(Effect.orDie)

const client = Effect.map(SqlClient.SqlClient, (sql) => sql.withoutTransforms())

/** The recorded version, `undefined` when nothing is recorded (no table, or an empty one). */
const recordedVersion = Effect.gen(function*() {
  const sql = yield* client
  const [exists] = yield* sql`
    SELECT to_regclass('evento_schema_migrations') IS NOT NULL AS migrations,
      to_regclass('evento_parked_messages') IS NOT NULL AS parked
  `.pipe(Effect.flatMap(decode(Schema.Tuple(Exists))))
  if (!exists.migrations) return { version: undefined, parked: exists.parked }
  const [row] = yield* sql`SELECT max(version) AS version FROM evento_schema_migrations`.pipe(
    Effect.flatMap(decode(Schema.Tuple(Version)))
  )
  return { version: row.version ?? undefined, parked: exists.parked }
})

/** The columns of whichever version-1 tables exist, by table. */
const existingColumns = Effect.gen(function*() {
  const sql = yield* client
  const rows = yield* sql`
    SELECT c.relname AS table_name,
      a.attname AS column_name,
      format_type(a.atttypid, a.atttypmod) AS column_type,
      a.attnotnull AS not_null
    FROM pg_attribute AS a
    JOIN pg_class AS c ON c.oid = a.attrelid
    WHERE a.attrelid IN (
        to_regclass('evento_outbox'),
        to_regclass('evento_consumer_positions'),
        to_regclass('evento_processed_events')
      )
      AND a.attnum > 0
      AND NOT a.attisdropped
  `.pipe(Effect.flatMap(decode(Schema.Array(Column))))
  const tables = new Map<string, Map<string, Column>>()
  for (const row of rows) {
    const columns = tables.get(row.table_name) ?? new Map<string, Column>()
    columns.set(row.column_name, row)
    tables.set(row.table_name, columns)
  }
  return tables
})

/**
 * The version the database is at: the recorded one, or 1 when the version-1 tables exist without a record (the
 * Elixir kit created them), or 0.
 *
 * @internal
 */
export const currentVersion: Effect.Effect<number, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const recorded = yield* recordedVersion
  if (recorded.version !== undefined) return recorded.version
  const tables = yield* existingColumns
  return tables.size > 0 ? 1 : 0
})

const v2Columns = ["seq", "idempotency_key", "attempts", "last_error", "next_attempt_at", "parked_at"]

/**
 * Brings version-1 tables made by the Elixir kit to exactly our version 1. Ecto creates `varchar(255)` and
 * `timestamp without time zone` (holding UTC), a nullable `updated_at` without default and a required
 * `event_type`; the columns are converted in place (timestamps read as UTC), so every row stays.
 */
const conform = (tables: Map<string, Map<string, Column>>, fail: Fail) =>
  Effect.gen(function*() {
    const sql = yield* client
    for (const [table, columns] of tables) {
      const expected = v1.columns[table] ?? {}
      for (const [column, type] of Object.entries(expected)) {
        const actual = columns.get(column)
        if (actual === undefined) {
          return yield* fail("unknown-schema", `Table ${table} exists but has no column ${column}`)
        }
        if (actual.column_type === type) continue
        if (type === "text" && actual.column_type.startsWith("character varying")) {
          yield* sql.unsafe(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE text`)
        } else if (
          type === "timestamp with time zone" && /^timestamp(\(\d+\))? without time zone$/.test(actual.column_type)
        ) {
          // A default typed for the old column would be converted with the session's time zone: redo it.
          yield* sql.unsafe(`ALTER TABLE ${table} ALTER COLUMN ${column} DROP DEFAULT`)
          yield* sql.unsafe(
            `ALTER TABLE ${table} ALTER COLUMN ${column} TYPE timestamptz USING ${column} AT TIME ZONE 'UTC'`
          )
        } else if (
          type === "timestamp with time zone" && /^timestamp\(\d+\) with time zone$/.test(actual.column_type)
        ) {
          yield* sql.unsafe(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE timestamptz`)
        } else {
          return yield* fail(
            "unknown-schema",
            `Column ${table}.${column} is ${actual.column_type}, expected ${type}`
          )
        }
      }
    }
    // Defaults and nullability as version 1 has them; a no-op where they already match.
    if (tables.has("evento_outbox")) {
      yield* sql.unsafe("ALTER TABLE evento_outbox ALTER COLUMN created_at SET DEFAULT now()")
    }
    if (tables.has("evento_consumer_positions")) {
      yield* sql.unsafe("UPDATE evento_consumer_positions SET updated_at = now() WHERE updated_at IS NULL")
      yield* sql.unsafe(`ALTER TABLE evento_consumer_positions
  ALTER COLUMN updated_at SET DEFAULT now(),
  ALTER COLUMN updated_at SET NOT NULL`)
    }
    if (tables.has("evento_processed_events")) {
      yield* sql.unsafe(`ALTER TABLE evento_processed_events
  ALTER COLUMN event_type DROP NOT NULL,
  ALTER COLUMN processed_at SET DEFAULT now()`)
    }
  })

/**
 * The version a run starts from. With nothing recorded but version-1 tables present, those tables are adopted:
 * checked, conformed, completed with whatever is missing, and recorded as version 1.
 */
const startingVersion = (fail: Fail) =>
  Effect.gen(function*() {
    const sql = yield* client
    const recorded = yield* recordedVersion
    if (recorded.version !== undefined) {
      if (recorded.version > latestVersion) {
        return yield* fail(
          "newer-schema",
          `The database is at version ${recorded.version}; this library knows versions up to ${latestVersion}`
        )
      }
      return recorded.version
    }

    const tables = yield* existingColumns
    if (tables.size === 0 && !recorded.parked) return 0
    const outbox = tables.get("evento_outbox")
    const newer = v2Columns.filter((column) => outbox?.has(column))
    if (recorded.parked || newer.length > 0) {
      return yield* fail(
        "unknown-schema",
        "Tables of version 2 exist but no version is recorded in evento_schema_migrations"
      )
    }

    yield* conform(tables, fail)
    yield* v1.up
    yield* sql`INSERT INTO evento_schema_migrations (version, name) VALUES (1, ${v1.name})`
    yield* Effect.logInfo("Adopted existing version-1 tables").pipe(
      Effect.annotateLogs({ tables: [...tables.keys()].join(",") })
    )
    return 1
  })

const checkTarget = (version: number, fail: Fail) =>
  Number.isInteger(version) && version >= 0 && version <= latestVersion
    ? Effect.succeed(version)
    : fail("invalid-version", `Version ${version} is not between 0 and ${latestVersion}`)

/** Runs `body` in a transaction (joining the caller's) holding the migrations lock, with the version table present. */
const locked = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* client
    return yield* sql.withTransaction(Effect.gen(function*() {
      // Taken before anything else, so concurrent runs (several processes starting at once) queue up here and
      // each sees what the previous one committed.
      yield* sql`SELECT pg_advisory_xact_lock(${lockKey}::bigint)`
      yield* sql`
        CREATE TABLE IF NOT EXISTS evento_schema_migrations (
          version integer PRIMARY KEY,
          name text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )
      `
      return yield* body
    }))
  })

/** @internal */
export const up = (target: number | undefined, fail: Fail) =>
  Effect.gen(function*() {
    const to = yield* checkTarget(target ?? latestVersion, fail)
    return yield* locked(Effect.gen(function*() {
      const sql = yield* client
      const from = yield* startingVersion(fail)
      for (const step of steps) {
        if (step.version <= from || step.version > to) continue
        yield* step.up
        yield* sql`INSERT INTO evento_schema_migrations (version, name) VALUES (${step.version}, ${step.name})`
        yield* Effect.logInfo("Applied migration").pipe(
          Effect.annotateLogs({ version: step.version, name: step.name })
        )
      }
      return Math.max(from, to)
    }))
  })

/** @internal */
export const down = (target: number | undefined, fail: Fail) =>
  locked(Effect.gen(function*() {
    const sql = yield* client
    const from = yield* startingVersion(fail)
    const to = yield* checkTarget(target ?? Math.max(from - 1, 0), fail)
    if (from >= 2 && to < 2) {
      const shared = yield* v2.marksSharingAnEvent
      if (shared > 0) {
        return yield* fail(
          "irreversible",
          `${shared} events are marked processed by more than one consumer; version 1 keys marks by event id ` +
            "alone and cannot hold them. Delete the extra marks first."
        )
      }
    }
    for (const step of [...steps].reverse()) {
      if (step.version > from || step.version <= to) continue
      yield* step.down
      yield* sql`DELETE FROM evento_schema_migrations WHERE version = ${step.version}`
      yield* Effect.logInfo("Reverted migration").pipe(
        Effect.annotateLogs({ version: step.version, name: step.name })
      )
    }
    return Math.min(from, to)
  }))
