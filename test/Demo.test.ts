/**
 * `npm run demo` as a user runs it, in a process of its own, small: against a fresh database of the run's PostgreSQL
 * and its own in-process EventoDB (or the real one when `EVENTODB_URL` and `EVENTODB_ADMIN_TOKEN` are set).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import pg from "pg"
import * as PgTest from "./support/PgTest.js"
import { spawnTs } from "./support/Processes.js"

const smallRun = ["--events", "200", "--streams", "10", "--members", "2", "--duration", "1"]

const runDemo = (databaseUrl: string) =>
  Effect.gen(function*() {
    const child = yield* spawnTs("examples/demo.ts", { args: smallRun, env: { DATABASE_URL: databaseUrl } })
    const status = yield* child.exited.pipe(Effect.timeout("100 seconds"))
    const stdout = yield* child.stdout
    const stderr = yield* child.stderr
    const context = `demo exited with ${status.code}\nstdout:\n${stdout.join("\n")}\nstderr:\n${
      stderr.slice(-40).join("\n")
    }`
    return { code: status.code, stdout, context }
  })

const line = (stdout: ReadonlyArray<string>, prefix: string) => stdout.find((printed) => printed.startsWith(prefix))

describe("demo", () => {
  it.scopedLive("passes its own verification on a small run and prints every check", () =>
    Effect.gen(function*() {
      const database = yield* PgTest.freshDatabase
      const { code, context, stdout } = yield* runDemo(database.url)

      assert.strictEqual(code, 0, context)
      for (
        const check of [
          "events written: ok (200 of 200",
          "stored in EventoDB: ok (200 messages",
          "delivered exactly once (by id): ok (200 handled, 0 duplicates, 0 missing",
          "per-stream order kept: ok",
          "read model complete: ok (10 leads for 10 applications, 0 differ)"
        ]
      ) {
        assert.isDefined(line(stdout, check), `missing "${check}"\n${context}`)
      }
      assert.match(
        line(stdout, "latency outbox write -> handler:") ?? "",
        /^latency outbox write -> handler: p50 \d+\.\d ms, p95 \d+\.\d ms, p99 \d+\.\d ms$/,
        context
      )
      assert.strictEqual(stdout[stdout.length - 1], "all checks passed", context)
    }), { timeout: 120_000 })

  it.scopedLive(
    "exits non-zero and names the failed check when a handler's effect is applied twice",
    () =>
      Effect.gen(function*() {
        const database = yield* PgTest.freshDatabase
        // The demo creates its tables only if they are missing: this one records every first event twice.
        yield* Effect.promise(async () => {
          const client = new pg.Client({ connectionString: database.url })
          await client.connect()
          try {
            await client.query(`
            CREATE TABLE demo_deliveries (
              run_id text NOT NULL, event_id uuid NOT NULL, stream text NOT NULL, n integer NOT NULL,
              member integer NOT NULL, in_order boolean NOT NULL, latency_ms double precision NOT NULL,
              handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            CREATE FUNCTION demo_double() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              INSERT INTO demo_deliveries (run_id, event_id, stream, n, member, in_order, latency_ms)
              VALUES (NEW.run_id, NEW.event_id, NEW.stream, NEW.n, NEW.member, NEW.in_order, NEW.latency_ms);
              RETURN NULL;
            END $$;
            CREATE TRIGGER demo_double AFTER INSERT ON demo_deliveries
              FOR EACH ROW WHEN (NEW.n = 0 AND pg_trigger_depth() = 0) EXECUTE FUNCTION demo_double();
          `)
          } finally {
            await client.end()
          }
        })

        const { code, context, stdout } = yield* runDemo(database.url)
        assert.strictEqual(code, 1, context)
        assert.isDefined(line(stdout, "delivered exactly once (by id): FAILED (210 handled, 10 duplicates"), context)
        assert.isDefined(line(stdout, "events written: ok"), context)
        assert.strictEqual(stdout[stdout.length - 1], "1 check FAILED", context)
      }),
    { timeout: 120_000 }
  )
})
