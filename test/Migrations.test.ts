import * as PgClient from "@effect/sql-pg/PgClient"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Migrations from "../src/Migrations.js"
import * as PgTest from "./support/PgTest.js"

const clientLayer = (url: string) => PgClient.layer({ url: Redacted.make(url), maxConnections: 4 }).pipe(Layer.orDie)

/** Runs `f` with a `SqlClient` on a database of its own, dropped afterwards. */
const withFreshDatabase = <A, E>(f: (url: string) => Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.scoped(Effect.flatMap(PgTest.freshDatabase, ({ url }) => Effect.provide(f(url), clientLayer(url))))

const snapshotFile = (version: number) => `./fixtures/migrations/schema-v${version}.txt`

/** Columns, constraints and indexes of the evento_ tables, one line each, sorted: what a migration produces. */
const schemaSnapshot = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const columns = yield* sql<{ line: string }>`
    SELECT format('column %s.%s %s%s%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
      CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
      COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '')) AS line
    FROM pg_attribute AS a
    JOIN pg_class AS c ON c.oid = a.attrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'evento\\_%' AND a.attnum > 0
      AND NOT a.attisdropped
  `
  const constraints = yield* sql<{ line: string }>`
    SELECT format('constraint %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid)) AS line
    FROM pg_constraint AS k
    JOIN pg_class AS c ON c.oid = k.conrelid
    WHERE c.relname LIKE 'evento\\_%'
  `
  const indexes = yield* sql<{ line: string }>`
    SELECT format('index %s', indexdef) AS line
    FROM pg_indexes
    WHERE schemaname = 'public' AND tablename LIKE 'evento\\_%'
  `
  return [...columns, ...constraints, ...indexes].map((row) => row.line).sort().join("\n") + "\n"
})

const matchesSnapshot = (version: number) =>
  Effect.flatMap(
    schemaSnapshot,
    (text) => Effect.promise(() => expect(text).toMatchFileSnapshot(snapshotFile(version)))
  )

const recorded = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<{ version: number; name: string }>`SELECT version, name FROM evento_schema_migrations ORDER BY version`
)

/** Rows as the Elixir kit writes them into version 1: no seq, the idempotency key only inside `data`. */
const insertVersion1Rows = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    INSERT INTO evento_outbox (id, namespace, stream, type, data, metadata, write_options, sent_at, created_at)
    VALUES
      ('00000000-0000-4000-8000-000000000003', 'app', 'account-1', 'Opened', '{"idempotency_key":"k1","n":1}',
        '{"m":1}', '{"expected_version":-1}', NULL, '2024-01-01T00:00:02Z'),
      ('00000000-0000-4000-8000-000000000001', 'app', 'account-1', 'Deposited', '{"idempotency_key":"k1","n":2}',
        NULL, NULL, NULL, '2024-01-01T00:00:02Z'),
      ('00000000-0000-4000-8000-000000000002', 'app', 'account-2', 'Opened', '{"n":3}',
        NULL, NULL, '2024-01-01T00:00:05Z', '2024-01-01T00:00:01Z'),
      ('00000000-0000-4000-8000-000000000004', 'other', 'account-1', 'Opened', '{"idempotency_key":"k1","n":4}',
        NULL, NULL, NULL, '2024-01-01T00:00:03Z')
  `
  yield* sql`
    INSERT INTO evento_consumer_positions (namespace, category, consumer_id, position)
    VALUES ('app', 'account', 'projector', 41)
  `
  yield* sql`
    INSERT INTO evento_processed_events (event_id, namespace, event_type, category, consumer_id)
    VALUES ('00000000-0000-4000-8000-0000000000aa', 'app', 'Opened', 'account', 'projector')
  `
})

interface OutboxRow {
  readonly id: string
  readonly seq: string
  readonly idempotency_key: string | null
  readonly data: { readonly n: number }
  readonly attempts: number
}

const outboxRows = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<OutboxRow>`
    SELECT id, seq::text AS seq, idempotency_key, data, attempts FROM evento_outbox ORDER BY seq
  `)

const outboxCount = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<{ count: string }>`SELECT count(*)::text AS count FROM evento_outbox`
)

describe("Migrations", () => {
  it.effect("migrates an empty database to version 2 and records each version", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        assert.strictEqual(yield* Migrations.currentVersion, 0)

        assert.strictEqual(yield* Migrations.up(), 2)

        assert.strictEqual(yield* Migrations.currentVersion, 2)
        assert.deepStrictEqual((yield* recorded).map((row) => row.version), [1, 2])
        yield* matchesSnapshot(2)
      })
    ))

  it.effect("creates exactly the Elixir kit's schema at version 1", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        assert.strictEqual(yield* Migrations.up({ version: 1 }), 1)

        assert.strictEqual(yield* Migrations.currentVersion, 1)
        yield* matchesSnapshot(1)
      })
    ))

  it.effect("is idempotent: a second up changes nothing", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        yield* Migrations.up()
        const before = yield* schemaSnapshot

        assert.strictEqual(yield* Migrations.up(), 2)
        assert.strictEqual(yield* Migrations.up({ version: 1 }), 2)

        assert.strictEqual(yield* schemaSnapshot, before)
        assert.deepStrictEqual((yield* recorded).map((row) => row.version), [1, 2])
      })
    ))

  it.effect("keeps every version-1 row through version 2, numbering seq and backfilling idempotency keys", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrations.up({ version: 1 })
        yield* insertVersion1Rows

        yield* Migrations.up({ version: 2 })

        const rows = yield* outboxRows
        // seq follows (created_at, id): ...02 was created first; ...01 and ...03 share a created_at.
        assert.deepStrictEqual(rows.map((row) => [row.id.slice(-2), row.seq]), [
          ["02", "1"],
          ["01", "2"],
          ["03", "3"],
          ["04", "4"]
        ])
        // The earliest row of namespace "app" keeps "k1"; the later one loses the key but not its data.
        assert.deepStrictEqual(rows.map((row) => [row.data.n, row.idempotency_key, row.attempts]), [
          [3, null, 0],
          [2, "k1", 0],
          [1, null, 0],
          [4, "k1", 0]
        ])
        const [kept] = yield* sql<{ data: unknown; metadata: unknown; write_options: unknown }>`
          SELECT data, metadata, write_options FROM evento_outbox WHERE id = '00000000-0000-4000-8000-000000000003'
        `
        assert.deepStrictEqual(kept, {
          data: { idempotency_key: "k1", n: 1 },
          metadata: { m: 1 },
          write_options: { expected_version: -1 }
        })
        const [position] = yield* sql<{ position: string }>`
          SELECT position::text AS position FROM evento_consumer_positions WHERE consumer_id = 'projector'
        `
        assert.strictEqual(position?.position, "41")
        const marks = yield* sql<{ event_id: string; global_position: string | null }>`
          SELECT event_id, global_position FROM evento_processed_events
        `
        assert.deepStrictEqual(marks, [{ event_id: "00000000-0000-4000-8000-0000000000aa", global_position: null }])

        // New rows continue the numbering.
        yield* sql`INSERT INTO evento_outbox (namespace, stream, type, data) VALUES ('app', 's', 't', '{}')`
        const [next] = yield* sql<{ seq: string }>`SELECT max(seq)::text AS seq FROM evento_outbox`
        assert.strictEqual(next?.seq, "5")
      })
    ))

  it.effect("goes down to version 1 keeping the rows, and up again", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrations.up({ version: 1 })
        const version1 = yield* schemaSnapshot
        yield* insertVersion1Rows
        yield* Migrations.up()

        assert.strictEqual(yield* Migrations.down(), 1)

        assert.strictEqual(yield* Migrations.currentVersion, 1)
        assert.strictEqual(yield* schemaSnapshot, version1)
        assert.deepStrictEqual(yield* outboxCount, [{ count: "4" }])
        const [mark] = yield* sql<{ count: string }>`SELECT count(*)::text AS count FROM evento_processed_events`
        assert.strictEqual(mark?.count, "1")

        assert.strictEqual(yield* Migrations.up(), 2)
        const rows = yield* outboxRows
        assert.deepStrictEqual(rows.map((row) => [row.id.slice(-2), row.seq, row.idempotency_key]), [
          ["02", "1", null],
          ["01", "2", "k1"],
          ["03", "3", null],
          ["04", "4", "k1"]
        ])
      })
    ))

  it.effect("goes down to 0, dropping every table", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        yield* Migrations.up()

        assert.strictEqual(yield* Migrations.down({ version: 0 }), 0)

        assert.strictEqual(yield* Migrations.currentVersion, 0)
        const left = (yield* schemaSnapshot).trim().split("\n")
        assert.isTrue(left.every((line) => line.includes("evento_schema_migrations")), left.join("\n"))
        assert.deepStrictEqual(yield* recorded, [])
        assert.strictEqual(yield* Migrations.up(), 2)
      })
    ))

  it.effect("refuses to go down when two consumers marked one event, which version 1 cannot hold", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrations.up()
        yield* sql`
          INSERT INTO evento_processed_events (event_id, namespace, event_type, category, consumer_id)
          VALUES ('00000000-0000-4000-8000-0000000000aa', 'app', 'Opened', 'account', 'a'),
            ('00000000-0000-4000-8000-0000000000aa', 'app', 'Opened', 'account', 'b')
        `

        const error = yield* Effect.flip(Migrations.down())

        assert.strictEqual(error._tag, "MigrationsError")
        assert.strictEqual(error._tag === "MigrationsError" && error.reason, "irreversible")
        assert.strictEqual(yield* Migrations.currentVersion, 2)
      })
    ))

  it.effect("lets two processes migrate at once: both succeed and there is one schema", () =>
    withFreshDatabase((url) =>
      Effect.gen(function*() {
        // Each `up` runs on a pool of its own, as two processes starting together would.
        const results = yield* Effect.all(
          [
            Effect.provide(Migrations.up(), clientLayer(url)),
            Effect.provide(Migrations.up(), clientLayer(url)),
            Effect.provide(Migrations.up(), clientLayer(url))
          ],
          { concurrency: "unbounded" }
        )

        assert.deepStrictEqual(results, [2, 2, 2])
        assert.deepStrictEqual((yield* recorded).map((row) => row.version), [1, 2])
        yield* matchesSnapshot(2)
      })
    ))

  it.effect("refuses a database recorded at a newer version than it knows", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrations.up()
        yield* sql`INSERT INTO evento_schema_migrations (version, name) VALUES (3, 'from_the_future')`

        const up = yield* Effect.flip(Migrations.up())
        const down = yield* Effect.flip(Migrations.down())

        assert.strictEqual(up._tag === "MigrationsError" && up.reason, "newer-schema")
        assert.strictEqual(down._tag === "MigrationsError" && down.reason, "newer-schema")
        assert.strictEqual(yield* Migrations.currentVersion, 3)
      })
    ))

  it.effect("refuses a version it does not have", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const errors = yield* Effect.all([
          Effect.flip(Migrations.up({ version: 3 })),
          Effect.flip(Migrations.up({ version: 1.5 })),
          Effect.flip(Migrations.down({ version: -1 }))
        ])

        assert.deepStrictEqual(
          errors.map((error) => error._tag === "MigrationsError" && error.reason),
          ["invalid-version", "invalid-version", "invalid-version"]
        )
        assert.strictEqual(yield* Migrations.currentVersion, 0)
      })
    ))

  it.effect("adopts version-1 tables the Elixir kit created without a version record", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // The types Ecto gives `:string`, `:map`, `:utc_datetime(_usec)`; no evento_schema_migrations.
        yield* sql.unsafe(`
          CREATE TABLE evento_outbox (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            namespace varchar(255) NOT NULL, stream varchar(255) NOT NULL, type varchar(255) NOT NULL,
            data jsonb NOT NULL, metadata jsonb, write_options jsonb,
            sent_at timestamp, created_at timestamp NOT NULL DEFAULT now()
          );
          CREATE INDEX evento_outbox_unsent_idx ON evento_outbox (namespace, created_at) WHERE sent_at IS NULL;
          CREATE INDEX evento_outbox_idempotency_key_idx ON evento_outbox ((data->>'idempotency_key'));
          CREATE INDEX evento_outbox_sent_at_index ON evento_outbox (sent_at);
          CREATE TABLE evento_consumer_positions (
            namespace varchar(255) NOT NULL, category varchar(255) NOT NULL, consumer_id varchar(255) NOT NULL,
            position bigint NOT NULL DEFAULT 0, updated_at timestamp(0),
            PRIMARY KEY (namespace, category, consumer_id)
          );
          CREATE INDEX evento_consumer_positions_updated_at_index ON evento_consumer_positions (updated_at);
          CREATE TABLE evento_processed_events (
            event_id uuid PRIMARY KEY, namespace varchar(255) NOT NULL, event_type varchar(255) NOT NULL,
            category varchar(255) NOT NULL, consumer_id varchar(255) NOT NULL,
            processed_at timestamp(0) NOT NULL DEFAULT now()
          );
          CREATE INDEX evento_processed_events_namespace_processed_at_index
            ON evento_processed_events (namespace, processed_at);
        `)
        yield* sql`
          INSERT INTO evento_outbox (id, namespace, stream, type, data, created_at)
          VALUES ('00000000-0000-4000-8000-000000000001', 'app', 'account-1', 'Opened', '{"idempotency_key":"k"}',
            '2024-01-01 10:00:00')
        `
        yield* sql`
          INSERT INTO evento_consumer_positions (namespace, category, consumer_id, position)
          VALUES ('app', 'account', 'projector', 7)
        `
        assert.strictEqual(yield* Migrations.currentVersion, 1)

        assert.strictEqual(yield* Migrations.up(), 2)

        assert.deepStrictEqual((yield* recorded).map((row) => row.version), [1, 2])
        yield* matchesSnapshot(2)
        const [row] = yield* sql<{ created_at: string; idempotency_key: string; seq: string }>`
          SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS created_at, idempotency_key,
            seq::text AS seq
          FROM evento_outbox
        `
        // The stored UTC wall-clock time is kept as that instant.
        assert.deepStrictEqual(row, { created_at: "2024-01-01 10:00:00", idempotency_key: "k", seq: "1" })
        const [position] = yield* sql<{ position: string; has_updated_at: boolean }>`
          SELECT position::text AS position, updated_at IS NOT NULL AS has_updated_at FROM evento_consumer_positions
        `
        assert.deepStrictEqual(position, { position: "7", has_updated_at: true })
      })
    ))

  it.effect("adopts a partial version-1 schema by creating the missing tables", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrations.up({ version: 1 })
        yield* sql`DROP TABLE evento_schema_migrations`
        yield* sql`DROP TABLE evento_processed_events`

        assert.strictEqual(yield* Migrations.up({ version: 1 }), 1)

        yield* matchesSnapshot(1)
      })
    ))

  it.effect("refuses version-2 tables that no version record explains", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrations.up()
        yield* sql`DELETE FROM evento_schema_migrations`

        const error = yield* Effect.flip(Migrations.up())

        assert.strictEqual(error._tag === "MigrationsError" && error.reason, "unknown-schema")
      })
    ))

  it.effect("runs from an @effect/sql Migrator with a table of its own", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const run = Migrator.make({})

        const first = yield* run({ loader: Migrations.loader, table: "kit_migrations" })
        const second = yield* run({ loader: Migrations.loader, table: "kit_migrations" })

        assert.deepStrictEqual(first.map(([id]) => id), [1, 2])
        assert.deepStrictEqual(second, [])
        assert.strictEqual(yield* Migrations.currentVersion, 2)
        yield* matchesSnapshot(2)
      })
    ))

  it.effect("runs inside an application's own Migrator migration", () =>
    withFreshDatabase(() =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const loader = Migrator.fromRecord({
          "1_create_accounts": sql`CREATE TABLE accounts (id text PRIMARY KEY)`,
          "2_eventodb_kit": Migrations.up({ version: 2 })
        })

        const applied = yield* Migrator.make({})({ loader })

        assert.deepStrictEqual(applied.map(([id]) => id), [1, 2])
        assert.strictEqual(yield* Migrations.currentVersion, 2)
      })
    ))
})
