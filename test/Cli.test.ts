/**
 * The built `eventodb-kit` bin, run as a child process against real PostgreSQL (a fresh database) and the target
 * EventoDB (the in-process server, or a real one from `EVENTODB_URL`): every subcommand, its `--json` output, its
 * wrong arguments and an unreachable database or server.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as TestServices from "effect/TestServices"
import * as EventoClientModule from "../src/EventoClient.js"
import * as Status from "../src/internal/status.js"
import * as Migrations from "../src/Migrations.js"
import * as Singleton from "../src/Singleton.js"
import { buildBin, type Run, runBin, stackLine } from "./Cli.support.js"
import * as EventoTest from "./support/EventoTest.js"
import * as PgTest from "./support/PgTest.js"

let bin = ""
let cleanupBuild = () => {}

beforeAll(async () => {
  const built = await buildBin()
  bin = built.bin
  cleanupBuild = built.cleanup
}, 240_000)

afterAll(() => cleanupBuild())

class Database extends Context.Tag("test/CliDatabase")<Database, { readonly url: string }>() {}

/** A fresh database (migrated, or not), its URL, and a `PgClient` on it. */
const database = (migrated: boolean) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const { url } = yield* PgTest.freshDatabase
    const pg = PgClient.layer({ url: Redacted.make(url), maxConnections: 5 })
    const schema = migrated ? Layer.effectDiscard(Migrations.up()) : Layer.empty
    return Layer.merge(Layer.succeed(Database, { url }), schema.pipe(Layer.provideMerge(pg)))
  })).pipe(Layer.orDie)

const TestLayer: Layer.Layer<
  Database | SqlClient.SqlClient | PgClient.PgClient | EventoTest.EventoTarget | HttpClient.HttpClient
> = Layer.mergeAll(database(true), EventoTest.layerTarget, NodeHttpClient.layerUndici)

const unreachableDatabase = "postgres://postgres:secret-password@127.0.0.1:1/nowhere"

const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.promise(() => runBin(bin, args, env))

/** Runs with DATABASE_URL on the test database. */
const cliDb = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.flatMap(Database, ({ url }) => cli(args, { DATABASE_URL: url, ...env }))

const ok = (run: Run): void =>
  assert.strictEqual(run.code, 0, `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`)

/** The JSON document on stdout, decoded strictly (an unexpected key fails too). */
const parse = <A, I>(schema: Schema.Schema<A, I>) => (run: Run): A => {
  ok(run)
  return Schema.decodeUnknownSync(schema, { onExcessProperty: "error" })(JSON.parse(run.stdout))
}

// --- the JSON each subcommand prints ---

const NullableNumber = Schema.NullOr(Schema.Number)
const StatusJson = Schema.Struct({
  schemaVersion: Schema.Number,
  namespaces: Schema.Array(Schema.Struct({
    namespace: Schema.String,
    unsent: Schema.Number,
    parked: Schema.Number,
    retrying: Schema.Number,
    oldestUnsentAt: Schema.NullOr(Schema.String),
    oldestUnsentAgeSeconds: NullableNumber
  })),
  consumers: Schema.Array(Schema.Struct({
    namespace: Schema.String,
    category: Schema.String,
    consumerId: Schema.String,
    position: NullableNumber,
    head: NullableNumber,
    lag: NullableNumber,
    parkedMessages: Schema.Number,
    updatedAt: Schema.NullOr(Schema.String)
  })),
  eventodb: Schema.NullOr(Schema.Struct({ url: Schema.String, namespace: Schema.String }))
})
const ParkedJson = Schema.Struct({
  namespace: Schema.String,
  rows: Schema.Array(Schema.Struct({
    id: Schema.String,
    stream: Schema.String,
    type: Schema.String,
    seq: Schema.Number,
    attempts: Schema.Number,
    error: Schema.NullOr(Schema.String),
    lastError: Schema.NullOr(Schema.String),
    createdAt: Schema.String,
    parkedAt: Schema.String
  }))
})
const ActionJson = Schema.Struct({
  namespace: Schema.String,
  action: Schema.Literal("requeue", "discard"),
  changed: Schema.Number,
  ids: Schema.Array(Schema.String),
  unchanged: Schema.Array(Schema.String)
})
const ResetJson = Schema.Struct({
  namespace: Schema.String,
  category: Schema.String,
  consumerId: Schema.String,
  previous: NullableNumber,
  position: Schema.Number,
  marksCleared: Schema.Number,
  marksAbove: Schema.Number
})
const CleanupJson = Schema.Struct({
  dryRun: Schema.Boolean,
  sentOlderThanSeconds: Schema.Number,
  marksOlderThanSeconds: Schema.Number,
  markWindow: Schema.Number,
  sentRows: Schema.Number,
  marks: Schema.Number,
  namespaces: Schema.Array(Schema.Struct({ namespace: Schema.String, sentRows: Schema.Number, marks: Schema.Number }))
})
const MigrateJson = Schema.Struct({ from: Schema.Number, to: Schema.Number, latest: Schema.Number })
const MigrateStatusJson = Schema.Struct({
  current: Schema.Number,
  latest: Schema.Number,
  versions: Schema.Array(Schema.Struct({ version: Schema.Number, name: Schema.String, applied: Schema.Boolean }))
})

/** A failure as an operator should see it: a non-zero exit, the message on stderr, no stack trace. */
const failsWith = (run: Run, message: string | RegExp) => {
  assert.notStrictEqual(run.code, 0, `expected a failure; stdout:\n${run.stdout}`)
  if (typeof message === "string") assert.include(run.stderr, message)
  else assert.match(run.stderr, message)
  assert.notMatch(run.stderr, stackLine, run.stderr)
}

const sql = Effect.map(SqlClient.SqlClient, (client) => client.withoutTransforms())

let counter = 0
const localNamespace = () => `cli-${Date.now().toString(36)}-${(counter++).toString(36)}`

interface OutboxRow {
  readonly namespace: string
  readonly stream?: string
  readonly parked?: boolean
  readonly attempts?: number
  readonly sentDaysAgo?: number
  readonly nextAttemptInSeconds?: number
}

const insertOutbox = (row: OutboxRow) =>
  Effect.gen(function*() {
    const db = yield* sql
    const rows = yield* db<{ id: string }>`
      INSERT INTO evento_outbox
        (namespace, stream, type, data, created_at, sent_at, parked_at, attempts, last_error, next_attempt_at)
      VALUES (
        ${row.namespace}, ${row.stream ?? "order-1"}, 'Placed', '{}'::jsonb,
        now() - make_interval(days => ${row.sentDaysAgo ?? 0}) - interval '1 minute',
        ${row.sentDaysAgo === undefined ? null : db`now() - make_interval(days => ${row.sentDaysAgo})`},
        ${row.parked === true ? db`now()` : null},
        ${row.attempts ?? (row.parked === true ? 10 : 0)},
        ${row.parked === true ? "EventoDB said no" : null},
        ${
      row.nextAttemptInSeconds === undefined ? null : db`now() + make_interval(secs => ${row.nextAttemptInSeconds})`
    }
      )
      RETURNING id::text AS id
    `
    return rows[0]!.id
  }).pipe(Effect.orDie)

const outboxRow = (id: string) =>
  Effect.flatMap(sql, (db) =>
    db<{ parked: boolean; attempts: number }>`
      SELECT parked_at IS NOT NULL AS parked, attempts FROM evento_outbox WHERE id = ${id}::uuid
    `).pipe(Effect.map((rows) => rows[0]), Effect.orDie)

const insertMarks = (namespace: string, consumerId: string, positions: ReadonlyArray<number>, daysAgo = 0) =>
  Effect.flatMap(sql, (db) =>
    db`
      INSERT INTO evento_processed_events
        (event_id, namespace, event_type, category, consumer_id, processed_at, global_position)
      SELECT gen_random_uuid(), ${namespace}, 'Placed', 'order', ${consumerId},
             now() - make_interval(days => ${daysAgo}), p
      FROM unnest(${positions}::bigint[]) AS p
    `).pipe(Effect.orDie)

const markPositions = (namespace: string, consumerId: string) =>
  Effect.flatMap(sql, (db) =>
    db<{ p: string }>`
      SELECT global_position::text AS p FROM evento_processed_events
      WHERE namespace = ${namespace} AND consumer_id = ${consumerId}
      ORDER BY global_position
    `).pipe(Effect.map((rows) => rows.map((row) => Number(row.p))), Effect.orDie)

const savePosition = (namespace: string, category: string, consumerId: string, position: number) =>
  Effect.flatMap(sql, (db) =>
    db`
      INSERT INTO evento_consumer_positions (namespace, category, consumer_id, position)
      VALUES (${namespace}, ${category}, ${consumerId}, ${position})
    `).pipe(Effect.orDie)

const positionOf = (namespace: string, category: string, consumerId: string) =>
  Effect.flatMap(sql, (db) =>
    db<{ position: string }>`
      SELECT position::text AS position FROM evento_consumer_positions
      WHERE namespace = ${namespace} AND category = ${category} AND consumer_id = ${consumerId}
    `).pipe(Effect.map((rows) => rows.map((row) => Number(row.position))), Effect.orDie)

describe("eventodb-kit CLI", () => {
  it.layer(TestLayer, { timeout: "120 seconds" })("against a migrated database", (it) => {
    describe("status", () => {
      it.scoped("shows each namespace's backlog and, with a token, each consumer's head and lag", () =>
        Effect.gen(function*() {
          const target = yield* EventoTest.EventoTarget
          const { namespace, token } = yield* EventoTest.freshNamespace
          const client = yield* EventoClientModule.make({ url: target.url, token }).pipe(Effect.orDie)
          const written = yield* Effect.forEach(
            [1, 2, 3, 4, 5],
            (n) => client.streamWrite(`order-${n % 2}`, { type: "Placed", data: { n } }),
            { concurrency: 1 }
          ).pipe(Effect.orDie)
          yield* client.streamWrite("invoice-1", { type: "Sent", data: {} }).pipe(Effect.orDie)
          const second = written[1]!.globalPosition
          const last = written[4]!.globalPosition
          yield* savePosition(namespace, "order", "projector", second)
          yield* savePosition(namespace, "order", "caught-up", last)
          yield* insertOutbox({ namespace })
          yield* insertOutbox({ namespace, parked: true })
          yield* insertOutbox({ namespace, attempts: 2, nextAttemptInSeconds: 60 })
          yield* insertOutbox({ namespace, sentDaysAgo: 1 })

          const env = { EVENTODB_URL: target.url, EVENTODB_TOKEN: Redacted.value(token) }
          const [json, human] = yield* Effect.all([
            cliDb(["status", "--json", "--namespace", namespace], env),
            cliDb(["status", "--namespace", namespace], env)
          ], { concurrency: "unbounded" })
          const status = parse(StatusJson)(json)

          assert.strictEqual(status.schemaVersion, 2)
          assert.deepStrictEqual(
            status.namespaces.map((n) => [n.namespace, n.unsent, n.parked, n.retrying]),
            [[namespace, 3, 1, 1]]
          )
          assert.isAbove(status.namespaces[0]?.oldestUnsentAgeSeconds ?? 0, 30)
          assert.deepStrictEqual(
            status.consumers.map((c) => [c.consumerId, c.position, c.head, c.lag]),
            [["caught-up", last, last, 0], ["projector", second, last, last - second]]
          )
          assert.deepStrictEqual(status.eventodb, { url: target.url, namespace })
          ok(human)
          assert.match(human.stdout, /NAMESPACE\s+UNSENT\s+PARKED\s+RETRYING\s+OLDEST UNSENT/)
          assert.match(human.stdout, new RegExp(`${namespace}\\s+3\\s+1\\s+1\\s+\\d+m \\d+s`))
          assert.match(
            human.stdout,
            new RegExp(`${namespace}\\s+order\\s+projector\\s+${second}\\s+${last}\\s+${last - second}`)
          )
        }))

      it.effect("without a token lists every namespace and leaves head and lag unknown", () =>
        Effect.gen(function*() {
          const a = localNamespace()
          const b = localNamespace()
          yield* insertOutbox({ namespace: a, parked: true })
          yield* savePosition(b, "order", "projector", 7)

          const [json, human] = yield* Effect.all([cliDb(["status", "--json"]), cliDb(["status"])], {
            concurrency: "unbounded"
          })
          const status = parse(StatusJson)(json)

          const names = status.namespaces.map((n) => n.namespace)
          assert.include(names, a)
          assert.include(names, b)
          assert.strictEqual(status.namespaces.find((n) => n.namespace === a)?.parked, 1)
          const consumer = status.consumers.find((c) => c.namespace === b)
          assert.deepStrictEqual([consumer?.position, consumer?.head, consumer?.lag], [7, null, null])
          assert.isNull(status.eventodb)
          ok(human)
          assert.include(human.stdout, "HEAD and LAG need EVENTODB_TOKEN")
        }))

      it.scoped("fails clearly when EventoDB cannot be reached or the token is not one", () =>
        Effect.gen(function*() {
          const { namespace, token } = yield* EventoTest.freshNamespace
          yield* savePosition(namespace, "order", "projector", 1)
          const [unreachable, badToken] = yield* Effect.all([
            cliDb(["status", "--namespace", namespace], {
              EVENTODB_URL: "http://127.0.0.1:1",
              EVENTODB_TOKEN: Redacted.value(token)
            }),
            cliDb(["status"], { EVENTODB_TOKEN: "not-a-token" })
          ], { concurrency: "unbounded" })
          failsWith(unreachable, "eventodb-kit: cannot reach EventoDB at http://127.0.0.1:1")
          failsWith(badToken, "the EventoDB token is not usable")
        }))
    })

    describe("outbox", () => {
      it.effect("parked lists the namespace's parked rows, oldest first", () =>
        Effect.gen(function*() {
          const namespace = localNamespace()
          const first = yield* insertOutbox({ namespace, parked: true, stream: "order-1" })
          const second = yield* insertOutbox({ namespace, parked: true, stream: "order-2" })
          yield* insertOutbox({ namespace })
          yield* insertOutbox({ namespace: localNamespace(), parked: true })

          const [json, human] = yield* Effect.all([
            cliDb(["outbox", "parked", "--namespace", namespace, "--json"]),
            cliDb(["outbox", "parked", "--namespace", namespace])
          ], { concurrency: "unbounded" })
          const listed = parse(ParkedJson)(json)
          assert.deepStrictEqual(listed.rows.map((row) => row.id), [first, second])
          assert.strictEqual(listed.rows[0]?.lastError, "EventoDB said no")
          ok(human)
          assert.match(human.stdout, new RegExp(`${first}\\s+order-1\\s+Placed`))
        }))

      it.effect("requeue --id makes parked rows of the namespace sendable and leaves other namespaces alone", () =>
        Effect.gen(function*() {
          const namespace = localNamespace()
          const parked = yield* insertOutbox({ namespace, parked: true })
          const elsewhere = yield* insertOutbox({ namespace: localNamespace(), parked: true })

          const result = parse(ActionJson)(
            yield* cliDb(["outbox", "requeue", "--namespace", namespace, "--id", parked, "--id", elsewhere, "--json"])
          )

          assert.deepStrictEqual(result, {
            namespace,
            action: "requeue",
            changed: 1,
            ids: [parked],
            unchanged: [elsewhere]
          })
          assert.deepStrictEqual(yield* outboxRow(parked), { parked: false, attempts: 0 })
          assert.deepStrictEqual(yield* outboxRow(elsewhere), { parked: true, attempts: 10 })
        }))

      it.scoped("discard --all-parked deletes only the parked rows of the token's namespace", () =>
        Effect.gen(function*() {
          const { namespace, token } = yield* EventoTest.freshNamespace
          const a = yield* insertOutbox({ namespace, parked: true })
          const b = yield* insertOutbox({ namespace, parked: true, stream: "order-2" })
          const unsent = yield* insertOutbox({ namespace })
          const elsewhere = yield* insertOutbox({ namespace: localNamespace(), parked: true })

          // No --namespace: the namespace is the one EVENTODB_TOKEN names.
          const result = parse(ActionJson)(
            yield* cliDb(["outbox", "discard", "--all-parked", "--json"], { EVENTODB_TOKEN: Redacted.value(token) })
          )

          assert.strictEqual(result.namespace, namespace)
          assert.strictEqual(result.changed, 2)
          assert.sameMembers([...result.ids], [a, b])
          assert.isUndefined(yield* outboxRow(a))
          assert.isUndefined(yield* outboxRow(b))
          assert.isDefined(yield* outboxRow(unsent))
          assert.isDefined(yield* outboxRow(elsewhere))
        }))

      it.effect("discard --id leaves a row that is not parked", () =>
        Effect.gen(function*() {
          const namespace = localNamespace()
          const unsent = yield* insertOutbox({ namespace })
          const run = yield* cliDb(["outbox", "discard", "--namespace", namespace, "--id", unsent])
          ok(run)
          assert.include(run.stdout, "discarded 0 rows")
          assert.include(run.stdout, `not parked in namespace ${namespace}, left alone:\n  ${unsent}`)
          assert.isDefined(yield* outboxRow(unsent))
        }))

      it.effect("refuses wrong arguments with a message and a non-zero exit", () =>
        Effect.gen(function*() {
          const [neither, notUuid, noNamespace] = yield* Effect.all([
            cliDb(["outbox", "requeue", "--namespace", "x"]),
            cliDb(["outbox", "discard", "--namespace", "x", "--id", "42"]),
            cliDb(["outbox", "requeue", "--all-parked"])
          ], { concurrency: "unbounded" })
          failsWith(neither, "pass --id <outbox id> (one or more) or --all-parked")
          failsWith(notUuid, "--id must be an outbox row id (a UUID); not one: 42")
          failsWith(noNamespace, "no namespace: pass --namespace, or set EVENTODB_TOKEN")
        }))
    })

    describe("consumer reset", () => {
      it.effect("moves the position backwards and says which marks will skip messages", () =>
        Effect.gen(function*() {
          const namespace = localNamespace()
          yield* savePosition(namespace, "order", "projector", 10)
          yield* insertMarks(namespace, "projector", [2, 4, 6, 8, 10])

          const result = parse(ResetJson)(
            yield* cliDb([
              "consumer",
              "reset",
              "--namespace",
              namespace,
              "--category",
              "order",
              "--consumer-id",
              "projector",
              "--to",
              "5",
              "--json"
            ])
          )

          assert.deepStrictEqual(result, {
            namespace,
            category: "order",
            consumerId: "projector",
            previous: 10,
            position: 5,
            marksCleared: 0,
            marksAbove: 3
          })
          assert.deepStrictEqual(yield* positionOf(namespace, "order", "projector"), [5])
          assert.deepStrictEqual(yield* markPositions(namespace, "projector"), [2, 4, 6, 8, 10])

          const human = yield* cliDb([
            "consumer",
            "reset",
            "--namespace",
            namespace,
            "--category",
            "order",
            "--consumer-id",
            "projector",
            "--to",
            "5"
          ])
          ok(human)
          assert.include(human.stdout, "position 5 -> 5")
          assert.include(human.stdout, "3 messages above 5 are marked as processed and will be skipped")
        }))

      it.effect("--clear-marks removes the marks above the new position, so a replay handles them again", () =>
        Effect.gen(function*() {
          const namespace = localNamespace()
          yield* savePosition(namespace, "order", "projector", 10)
          yield* insertMarks(namespace, "projector", [2, 4, 6, 8, 10])
          yield* insertMarks(namespace, "other", [6, 8])

          const result = parse(ResetJson)(
            yield* cliDb([
              "consumer",
              "reset",
              "--namespace",
              namespace,
              "--category",
              "order",
              "--consumer-id",
              "projector",
              "--to",
              "5",
              "--clear-marks",
              "--json"
            ])
          )

          assert.strictEqual(result.marksCleared, 3)
          assert.strictEqual(result.marksAbove, 0)
          assert.deepStrictEqual(yield* markPositions(namespace, "projector"), [2, 4])
          assert.deepStrictEqual(yield* markPositions(namespace, "other"), [6, 8])
        }))

      it.scoped("refuses while the consumer's singleton lock is held, unless forced", () =>
        TestServices.provideLive(Effect.gen(function*() {
          const namespace = localNamespace()
          yield* savePosition(namespace, "order", "projector", 10)
          const name = `consumer:${namespace}:order:projector`
          const singleton = yield* Singleton.make
          const holder = yield* singleton.run(name, Effect.never, { verifyInterval: "200 millis" }).pipe(
            Effect.forkScoped
          )
          yield* Status.singletonHeld(name).pipe(
            Effect.repeat({ until: (held) => held, schedule: Schedule.spaced("50 millis") }),
            Effect.timeout("10 seconds"),
            Effect.orDie
          )
          const args = ["consumer", "reset", "--namespace", namespace, "--category", "order", "--consumer-id"]

          failsWith(yield* cliDb([...args, "projector", "--to", "3"]), "is running (its singleton lock")
          assert.deepStrictEqual(yield* positionOf(namespace, "order", "projector"), [10])

          ok(yield* cliDb([...args, "projector", "--to", "3", "--force"]))
          assert.deepStrictEqual(yield* positionOf(namespace, "order", "projector"), [3])

          yield* Fiber.interrupt(holder)
          yield* Status.singletonHeld(name).pipe(
            Effect.repeat({ until: (held) => !held, schedule: Schedule.spaced("50 millis") }),
            Effect.timeout("10 seconds"),
            Effect.orDie
          )
          ok(yield* cliDb([...args, "projector", "--to", "4"]))
        })))

      it.effect("refuses wrong arguments with a message and a non-zero exit", () =>
        Effect.gen(function*() {
          const base = ["consumer", "reset", "--namespace", "x"]
          const [missingTo, badCategory, negative] = yield* Effect.all([
            cliDb([...base, "--category", "order", "--consumer-id", "p"]),
            cliDb([...base, "--category", "order-1", "--consumer-id", "p", "--to", "1"]),
            cliDb([...base, "--category", "order", "--consumer-id", "p", "--to", "-1"])
          ], { concurrency: "unbounded" })
          failsWith(missingTo, "--to")
          failsWith(badCategory, "--category must be a category name")
          failsWith(negative, "--to must be 0 or more")
        }))
    })

    describe("cleanup", () => {
      it.effect("removes old sent rows and safely old marks, keeps the rest, and --dry-run removes nothing", () =>
        Effect.gen(function*() {
          const namespace = localNamespace()
          const oldSent = yield* insertOutbox({ namespace, sentDaysAgo: 8 })
          const recentSent = yield* insertOutbox({ namespace, sentDaysAgo: 2 })
          const unsent = yield* insertOutbox({ namespace })
          const parked = yield* insertOutbox({ namespace, parked: true })
          yield* savePosition(namespace, "order", "projector", 50)
          yield* insertMarks(namespace, "projector", [10, 45, 60], 30)

          const dry = parse(CleanupJson)(
            yield* cliDb(["cleanup", "--namespace", namespace, "--dry-run", "--mark-window", "20", "--json"])
          )
          assert.deepStrictEqual([dry.dryRun, dry.sentRows, dry.marks], [true, 1, 1])
          assert.isDefined(yield* outboxRow(oldSent))

          const result = parse(CleanupJson)(
            yield* cliDb([
              "cleanup",
              "--namespace",
              namespace,
              "--sent-older-than",
              "3d",
              "--mark-window",
              "20",
              "--json"
            ])
          )

          assert.deepStrictEqual(result, {
            dryRun: false,
            sentOlderThanSeconds: 3 * 86_400,
            marksOlderThanSeconds: 7 * 86_400,
            markWindow: 20,
            sentRows: 1,
            marks: 1,
            namespaces: [{ namespace, sentRows: 1, marks: 1 }]
          })
          assert.isUndefined(yield* outboxRow(oldSent))
          for (const kept of [recentSent, unsent, parked]) assert.isDefined(yield* outboxRow(kept))
          assert.deepStrictEqual(yield* markPositions(namespace, "projector"), [45, 60])

          const human = yield* cliDb(["cleanup", "--namespace", namespace, "--sent-older-than", "1 day"])
          ok(human)
          assert.include(human.stdout, "removed 1 sent outbox rows and 0 processed marks")
          assert.match(human.stdout, new RegExp(`${namespace}\\s+1\\s+0`))
          assert.isUndefined(yield* outboxRow(recentSent))
        }))

      it.effect("refuses a duration it cannot read", () =>
        Effect.gen(function*() {
          failsWith(
            yield* cliDb(["cleanup", "--sent-older-than", "soon"]),
            "--sent-older-than: 'soon' is not a duration"
          )
        }))
    })

    describe("configuration", () => {
      it.effect("--database-url wins over DATABASE_URL", () =>
        Effect.gen(function*() {
          const { url } = yield* Database
          ok(yield* cli(["migrate", "status", "--database-url", url], { DATABASE_URL: unreachableDatabase }))
        }))

      it.effect("a missing DATABASE_URL is named", () =>
        Effect.gen(function*() {
          const runs = yield* Effect.all([
            cli(["status"]),
            cli(["consumer", "reset", "--namespace", "x", "--category", "c", "--consumer-id", "i", "--to", "1"])
          ], { concurrency: "unbounded" })
          for (const run of runs) failsWith(run, "eventodb-kit: DATABASE_URL is not set: set it or pass --database-url")
        }))

      it.effect("an unreachable database fails every command with its address, no password and no stack trace", () =>
        Effect.gen(function*() {
          const runs = yield* Effect.forEach(
            [
              ["status"],
              ["migrate", "status"],
              ["cleanup"],
              ["outbox", "requeue", "--namespace", "x", "--all-parked"],
              ["consumer", "reset", "--namespace", "x", "--category", "c", "--consumer-id", "i", "--to", "1"]
            ],
            (args) => cli(args, { DATABASE_URL: unreachableDatabase }),
            { concurrency: "unbounded" }
          )
          for (const run of runs) {
            failsWith(run, "eventodb-kit: cannot connect to postgres://postgres@127.0.0.1:1/nowhere: ")
            assert.include(run.stderr, "ECONNREFUSED")
            assert.notInclude(run.stderr, "secret-password")
          }
        }))

      it.effect("an unknown subcommand is refused", () =>
        Effect.gen(function*() {
          failsWith(yield* cli(["frobnicate"]), /Invalid subcommand/)
        }))
    })
  })

  it.layer(database(false), { timeout: "120 seconds" })("migrate", (it) => {
    it.effect("status, up, down and up again, in JSON and as text", () =>
      Effect.gen(function*() {
        const before = parse(MigrateStatusJson)(yield* cliDb(["migrate", "status", "--json"]))
        assert.deepStrictEqual(before, {
          current: 0,
          latest: 2,
          versions: [
            { version: 1, name: "initial", applied: false },
            { version: 2, name: "ordering_idempotency_parking", applied: false }
          ]
        })

        const commandsNeedSchema = yield* cliDb(["status"])
        failsWith(commandsNeedSchema, "schema version 0; this command needs version 2: run `eventodb-kit migrate up`")

        const up = yield* cliDb(["migrate", "up", "--json"])
        assert.deepStrictEqual(parse(MigrateJson)(up), { from: 0, to: 2, latest: 2 })
        assert.include(up.stderr, "Applied migration") // logs go to stderr; stdout stays JSON
        assert.strictEqual(yield* Migrations.currentVersion, 2)

        const again = yield* cliDb(["migrate", "up"])
        ok(again)
        assert.strictEqual(again.stdout.trim(), "already at version 2")

        assert.deepStrictEqual(parse(MigrateJson)(yield* cliDb(["migrate", "down", "--json"])), {
          from: 2,
          to: 1,
          latest: 2
        })
        assert.strictEqual(yield* Migrations.currentVersion, 1)

        const text = yield* cliDb(["migrate", "status"])
        ok(text)
        assert.include(text.stdout, "schema version 1 of 2 (run `eventodb-kit migrate up`)")
        assert.match(text.stdout, /2\s+ordering_idempotency_parking\s+no/)

        assert.deepStrictEqual(parse(MigrateJson)(yield* cliDb(["migrate", "up", "--to", "2", "--json"])), {
          from: 1,
          to: 2,
          latest: 2
        })
      }).pipe(Effect.orDie))

    it.effect("refuses a version it does not know", () =>
      Effect.gen(function*() {
        failsWith(yield* cliDb(["migrate", "up", "--to", "9"]), "eventodb-kit: Version 9 is not between 0 and 2")
        failsWith(yield* cliDb(["migrate", "down", "--to", "x"]), "'x' is not a integer")
      }))
  })
})
