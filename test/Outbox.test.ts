import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { execFile } from "node:child_process"
import pg from "pg"
import { EventoClient } from "../src/EventoClient.js"
import * as Migrations from "../src/Migrations.js"
import * as Outbox from "../src/Outbox.js"
import * as PgTest from "./support/PgTest.js"

// Outbox reads only `namespace` from the client; it never calls the server.
const clientFor = (namespace: string) => Layer.succeed(EventoClient, { namespace } as unknown as EventoClient.Service)

const Database = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Migrations.up()
  yield* sql`CREATE TABLE accounts (id text PRIMARY KEY)`
})).pipe(Layer.provideMerge(PgTest.layer))

const TestLayer = Outbox.layer().pipe(Layer.provide(clientFor("app")), Layer.provideMerge(Database))

interface Row {
  readonly id: string
  readonly seq: string
  readonly namespace: string
  readonly stream: string
  readonly type: string
  readonly data: unknown
  readonly metadata: unknown
  readonly write_options: unknown
  readonly idempotency_key: string | null
  readonly sent_at: Date | null
  readonly attempts: number
}

const rowsOf = (where: { readonly stream?: string; readonly namespace?: string }) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<Row>`
      SELECT id, seq::text AS seq, namespace, stream, type, data, metadata, write_options, idempotency_key, sent_at,
        attempts
      FROM evento_outbox
      WHERE ${where.stream === undefined ? sql`true` : sql`stream = ${where.stream}`}
        AND ${where.namespace === undefined ? sql`true` : sql`namespace = ${where.namespace}`}
      ORDER BY seq
    `)

const countAll = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM evento_outbox`, (rows) => rows[0]?.n ?? -1)
)

const currentUrl = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql<{ db: string }>`SELECT current_database() AS db`,
    (rows) => PgTest.databaseUrl(rows[0]!.db)
  ))

/** A pool of its own on the test database, for writers that must hold separate connections. */
const poolOn = (url: string, maxConnections: number) =>
  PgClient.layer({ url: Redacted.make(url), maxConnections }).pipe(Layer.orDie)

/** Waits until some transaction of this database waits for an advisory lock. */
const someoneWaitsForAdvisoryLock = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ n: number }>`
    SELECT count(*)::int AS n
    FROM pg_locks
    WHERE locktype = 'advisory'
      AND NOT granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  `.pipe(
    Effect.filterOrFail((rows) => (rows[0]?.n ?? 0) > 0, () => new Error("no transaction waits for an advisory lock")),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds")))
  ))

/** A connection LISTENing on the outbox channel, its notifications' payloads in a queue. */
const listen = (url: string) =>
  Effect.gen(function*() {
    const payloads = yield* Queue.unbounded<string>()
    yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        client.on("notification", (message) => Queue.unsafeOffer(payloads, message.payload ?? ""))
        await client.query(`LISTEN ${Outbox.channel}`)
        return client
      }),
      (client) => Effect.promise(() => client.end())
    )
    return payloads
  })

// Real time throughout: these tests wait on PostgreSQL locks and notifications.
layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })("Outbox", (it) => {
  it.effect("writes one message for the client's namespace and yields its id", () =>
    Effect.gen(function*() {
      const id = yield* Outbox.write("single-1", { type: "Opened", data: { a: 1, nested: { b: [true, null] } } })

      const rows = yield* rowsOf({ stream: "single-1" })
      assert.strictEqual(rows.length, 1)
      const row = rows[0]!
      assert.strictEqual(row.id, id)
      assert.match(id, /^[0-9a-f-]{36}$/)
      assert.deepStrictEqual(
        [row.namespace, row.type, row.data, row.metadata, row.write_options, row.idempotency_key, row.sent_at],
        ["app", "Opened", { a: 1, nested: { b: [true, null] } }, null, null, null, null]
      )
      assert.strictEqual(row.attempts, 0)
    }))

  it.effect("stores the options: id, expectedVersion as write_options, idempotency key, metadata", () =>
    Effect.gen(function*() {
      const id = yield* Outbox.write(
        "options-1",
        { type: "Opened", data: { a: 1 }, metadata: { correlationStreamName: "flow-1" } },
        { id: "0190F2A4-1C2B-7D3E-8F40-123456789ABC", expectedVersion: 4, idempotencyKey: "open-1" }
      )

      assert.strictEqual(id, "0190f2a4-1c2b-7d3e-8f40-123456789abc")
      const [row] = yield* rowsOf({ stream: "options-1" })
      assert.deepStrictEqual(
        [row?.id, row?.write_options, row?.idempotency_key, row?.metadata],
        [id, { expectedVersion: 4 }, "open-1", { correlationStreamName: "flow-1" }]
      )
      const [minusOne] = yield* Outbox.writeBatch([{
        stream: "options-2",
        message: { type: "Opened", data: {} },
        options: { expectedVersion: -1 }
      }])
      const [created] = yield* rowsOf({ stream: "options-2" })
      assert.deepStrictEqual([created?.id, created?.write_options], [minusOne, { expectedVersion: -1 }])
    }))

  it.effect("takes the idempotency key from data.idempotency_key unless the option gives one", () =>
    Effect.gen(function*() {
      const first = yield* Outbox.write("keyed-1", { type: "Paid", data: { idempotency_key: "pay-1" } })
      const again = yield* Outbox.write("keyed-1", { type: "Paid", data: { idempotency_key: "pay-1", n: 2 } })
      const overridden = yield* Outbox.write(
        "keyed-1",
        { type: "Paid", data: { idempotency_key: "pay-1" } },
        { idempotencyKey: "pay-2" }
      )

      assert.strictEqual(again, first)
      assert.notStrictEqual(overridden, first)
      const rows = yield* rowsOf({ stream: "keyed-1" })
      assert.deepStrictEqual(rows.map((row) => [row.id, row.idempotency_key, row.data]), [
        [first, "pay-1", { idempotency_key: "pay-1" }],
        [overridden, "pay-2", { idempotency_key: "pay-1" }]
      ])
    }))

  it.effect("writes a batch in order: ids and seq follow the array", () =>
    Effect.gen(function*() {
      const ids = yield* Outbox.writeBatch([
        { stream: "batch-b", message: { type: "One", data: { n: 1 } } },
        { stream: "batch-a", message: { type: "Two", data: { n: 2 } }, options: { expectedVersion: 0 } },
        { stream: "batch-b", message: { type: "Three", data: { n: 3 } }, options: { idempotencyKey: "b3" } },
        { stream: "batch-a", message: { type: "Four", data: { n: 4 }, metadata: { m: 4 } } }
      ])

      assert.strictEqual(ids.length, 4)
      assert.strictEqual(new Set(ids).size, 4)
      const rows = [...(yield* rowsOf({ stream: "batch-a" })), ...(yield* rowsOf({ stream: "batch-b" }))]
        .sort((a, b) => Number(a.seq) - Number(b.seq))
      assert.deepStrictEqual(rows.map((row) => row.id), [...ids])
      assert.deepStrictEqual(rows.map((row) => row.type), ["One", "Two", "Three", "Four"])
      assert.deepStrictEqual(rows.map((row) => row.write_options), [null, { expectedVersion: 0 }, null, null])
      assert.deepStrictEqual(yield* Outbox.writeBatch([]), [])
    }))

  it.effect("resolves a key repeated inside one batch to the first entry's id", () =>
    Effect.gen(function*() {
      const ids = yield* Outbox.writeBatch([
        { stream: "dup-1", message: { type: "A", data: {} }, options: { idempotencyKey: "same" } },
        { stream: "dup-1", message: { type: "B", data: {} } },
        { stream: "dup-2", message: { type: "C", data: { idempotency_key: "same" } } }
      ])

      assert.strictEqual(ids[2], ids[0])
      assert.notStrictEqual(ids[1], ids[0])
      assert.deepStrictEqual((yield* rowsOf({ stream: "dup-1" })).map((row) => row.type), ["A", "B"])
      assert.deepStrictEqual(yield* rowsOf({ stream: "dup-2" }), [])
    }))

  it.effect("commits with the business row and rolls back with it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const openAccount = (id: string, fail: boolean) =>
        sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO accounts (id) VALUES (${id})`
          yield* Outbox.write(`account-${id}`, { type: "Opened", data: { id } })
          if (fail) return yield* Effect.fail("business rule broken" as const)
        }))

      yield* openAccount("committed", false)
      const failed = yield* Effect.flip(openAccount("rolled-back", true))

      assert.strictEqual(failed, "business rule broken")
      const accounts = yield* sql<{ id: string }>`SELECT id FROM accounts ORDER BY id`
      assert.deepStrictEqual(accounts.map((row) => row.id), ["committed"])
      assert.strictEqual((yield* rowsOf({ stream: "account-committed" })).length, 1)
      assert.strictEqual((yield* rowsOf({ stream: "account-rolled-back" })).length, 0)
    }))

  it.effect("orders two transactions on one stream by commit: the second waits for the first", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const written = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const first = yield* sql.withTransaction(
        Outbox.write("ordered-1", { type: "First", data: {} }).pipe(
          Effect.zipLeft(Deferred.succeed(written, undefined)),
          Effect.zipLeft(Deferred.await(release))
        )
      ).pipe(Effect.fork)
      yield* Deferred.await(written)

      const second = yield* sql.withTransaction(Outbox.write("ordered-1", { type: "Second", data: {} })).pipe(
        Effect.fork
      )
      yield* someoneWaitsForAdvisoryLock
      assert.isTrue(Option.isNone(yield* Fiber.poll(second)))
      // Another stream is not held up by the open transaction.
      yield* sql.withTransaction(Outbox.write("ordered-2", { type: "Other", data: {} }))
      yield* Deferred.succeed(release, undefined)

      const firstId = yield* Fiber.join(first)
      const secondId = yield* Fiber.join(second)
      const rows = yield* rowsOf({ stream: "ordered-1" })
      assert.deepStrictEqual(rows.map((row) => row.id), [firstId, secondId])
      assert.isTrue(Number(rows[0]!.seq) < Number(rows[1]!.seq))
    }))

  it.effect("writes a key once under 20 concurrent writers on separate connections, all getting its id", () =>
    Effect.gen(function*() {
      const url = yield* currentUrl
      const write = (i: number) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const outbox = yield* Outbox.make({ namespace: "race" })
          // Each holds its transaction open a moment, so the others meet an uncommitted row.
          return yield* sql.withTransaction(
            outbox.write(`race-${i % 5}`, { type: "Charged", data: { i } }, { idempotencyKey: "charge-1" }).pipe(
              Effect.zipLeft(Effect.sleep("30 millis"))
            )
          )
        })

      const ids = yield* Effect.all(Array.from({ length: 20 }, (_, i) => write(i)), { concurrency: "unbounded" })
        .pipe(Effect.provide(poolOn(url, 21)))

      const rows = yield* rowsOf({ namespace: "race" })
      assert.strictEqual(rows.length, 1)
      assert.deepStrictEqual(new Set(ids), new Set([rows[0]!.id]))
    }))

  it.effect("writes the same key once per namespace", () =>
    Effect.gen(function*() {
      const a = yield* Outbox.make({ namespace: "tenant-a" })
      const b = yield* Outbox.make({ namespace: "tenant-b" })

      const fromA = yield* a.write("invoice-1", { type: "Sent", data: {} }, { idempotencyKey: "invoice-1" })
      const fromB = yield* b.write("invoice-1", { type: "Sent", data: {} }, { idempotencyKey: "invoice-1" })
      const againA = yield* a.write("invoice-1", { type: "Sent", data: {} }, { idempotencyKey: "invoice-1" })

      assert.notStrictEqual(fromA, fromB)
      assert.strictEqual(againA, fromA)
      assert.strictEqual((yield* rowsOf({ namespace: "tenant-a" })).length, 1)
      assert.strictEqual((yield* rowsOf({ namespace: "tenant-b" })).length, 1)
    }))

  it.effect("rejects every invalid input with a typed error before any SQL, writing nothing", () =>
    Effect.gen(function*() {
      class Money {
        constructor(readonly cents: number) {}
      }
      const cycle: Record<string, unknown> = { a: 1 }
      cycle.self = cycle
      const shared = { x: 1 }
      const big = "é".repeat(400) // 800 bytes of UTF-8 in 400 characters
      const cases: ReadonlyArray<readonly [string, Outbox.WriteEntry, Outbox.InvalidOutboxMessage["reason"]]> = [
        ["empty stream", { stream: "", message: { type: "T", data: {} } }, "invalid-stream"],
        ["NUL in stream", { stream: "a\u0000b", message: { type: "T", data: {} } }, "invalid-stream"],
        ["empty type", { stream: "s", message: { type: "", data: {} } }, "invalid-type"],
        ["data null", { stream: "s", message: { type: "T", data: null as never } }, "invalid-data"],
        ["data array", { stream: "s", message: { type: "T", data: [] as never } }, "invalid-data"],
        ["data a string", { stream: "s", message: { type: "T", data: "x" as never } }, "invalid-data"],
        ["data undefined", { stream: "s", message: { type: "T", data: undefined as never } }, "invalid-data"],
        ["a function inside", { stream: "s", message: { type: "T", data: { f: () => 1 } } }, "invalid-data"],
        ["a bigint inside", { stream: "s", message: { type: "T", data: { n: 1n } } }, "invalid-data"],
        ["undefined inside", { stream: "s", message: { type: "T", data: { u: undefined } } }, "invalid-data"],
        ["a symbol inside", { stream: "s", message: { type: "T", data: { s: Symbol("s") } } }, "invalid-data"],
        ["a cycle", { stream: "s", message: { type: "T", data: cycle } }, "invalid-data"],
        ["a Date", { stream: "s", message: { type: "T", data: { at: new Date(0) } } }, "invalid-data"],
        ["a Map", { stream: "s", message: { type: "T", data: { m: new Map() } } }, "invalid-data"],
        ["a class instance", { stream: "s", message: { type: "T", data: new Money(1) as never } }, "invalid-data"],
        ["NaN", { stream: "s", message: { type: "T", data: { n: [1, Number.NaN] } } }, "invalid-data"],
        ["Infinity", { stream: "s", message: { type: "T", data: { n: Infinity } } }, "invalid-data"],
        ["a NUL in a string", { stream: "s", message: { type: "T", data: { s: "\u0000" } } }, "invalid-data"],
        ["a lone surrogate", { stream: "s", message: { type: "T", data: { s: "\uD800" } } }, "invalid-data"],
        [
          "metadata null",
          { stream: "s", message: { type: "T", data: {}, metadata: null as never } },
          "invalid-metadata"
        ],
        [
          "metadata Date",
          { stream: "s", message: { type: "T", data: {}, metadata: { d: new Date() } } },
          "invalid-metadata"
        ],
        ["id not a UUID", { stream: "s", message: { type: "T", data: {} }, options: { id: "42" } }, "invalid-id"],
        [
          "expectedVersion -2",
          { stream: "s", message: { type: "T", data: {} }, options: { expectedVersion: -2 } },
          "invalid-expected-version"
        ],
        [
          "expectedVersion 1.5",
          { stream: "s", message: { type: "T", data: {} }, options: { expectedVersion: 1.5 } },
          "invalid-expected-version"
        ],
        [
          "empty idempotency key",
          { stream: "s", message: { type: "T", data: {} }, options: { idempotencyKey: "" } },
          "invalid-idempotency-key"
        ],
        ["too large", { stream: "s", message: { type: "T", data: { big } } }, "too-large"],
        ["too large with metadata", {
          stream: "s",
          message: { type: "T", data: { a: big.slice(0, 200) }, metadata: { b: big.slice(0, 200) } }
        }, "too-large"]
      ]
      // A client whose pool is closed: any statement would fail with SqlError, not the typed validation error.
      const scope = yield* Scope.make()
      const url = yield* currentUrl
      const closed = yield* Layer.buildWithScope(poolOn(url, 1), scope)
      yield* Scope.close(scope, Exit.void)
      const limited = (namespace: string) => Outbox.make({ namespace, maxMessageBytes: 700 })
      const offline = yield* Effect.provide(limited("invalid"), closed)
      const online = yield* limited("invalid")
      const before = yield* countAll

      for (const [name, entry, reason] of cases) {
        for (const outbox of [offline, online]) {
          const error = yield* Effect.flip(outbox.write(entry.stream, entry.message, entry.options))
          assert.strictEqual(error._tag, "InvalidOutboxMessage", name)
          assert.strictEqual(error._tag === "InvalidOutboxMessage" && error.reason, reason, name)
        }
      }
      // One invalid entry rejects the whole batch.
      const batch = yield* Effect.flip(online.writeBatch([
        { stream: "fine", message: { type: "T", data: { shared, again: shared } } },
        { stream: "", message: { type: "T", data: {} } }
      ]))
      assert.strictEqual(batch._tag === "InvalidOutboxMessage" && batch.reason, "invalid-stream")
      assert.include(batch.message, "entry 1")
      assert.strictEqual(yield* countAll, before)

      // The same valid write reaches the database: the offline client fails with SqlError, the online one writes.
      const reached = yield* Effect.flip(offline.write("fine", { type: "T", data: { shared, again: shared } }))
      assert.strictEqual(reached._tag, "SqlError")
      // `{"exactly":""}` is 14 bytes: 686 more make exactly the limit, one more is over it.
      const over = yield* Effect.flip(online.write("fine", { type: "T", data: { exactly: "x".repeat(687) } }))
      assert.strictEqual(over._tag === "InvalidOutboxMessage" && over.reason, "too-large")
      yield* online.write("fine", { type: "T", data: { exactly: "x".repeat(686) } })
      assert.strictEqual(yield* countAll, before + 1)
    }))

  it.scoped("notifies the sender when the transaction commits, not before and not on rollback", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const payloads = yield* listen(yield* currentUrl)
      const outbox = (namespace: string) => Outbox.make({ namespace })
      const held = yield* outbox("held")
      const rolled = yield* outbox("rolled")
      const plain = yield* outbox("plain")
      const written = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()

      const holder = yield* sql.withTransaction(
        held.write("notify-1", { type: "T", data: {} }).pipe(
          Effect.zipLeft(Deferred.succeed(written, undefined)),
          Effect.zipLeft(Deferred.await(release))
        )
      ).pipe(Effect.fork)
      yield* Deferred.await(written)
      yield* plain.write("notify-2", { type: "T", data: {} })
      // Notifications arrive in commit order: the open transaction's has not been sent.
      assert.strictEqual(yield* Queue.take(payloads), "plain")

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      assert.strictEqual(yield* Queue.take(payloads), "held")

      yield* Effect.flip(sql.withTransaction(
        Effect.zipRight(rolled.write("notify-3", { type: "T", data: {} }), Effect.fail("abort" as const))
      ))
      yield* plain.write("notify-4", { type: "T", data: {} })
      assert.strictEqual(yield* Queue.take(payloads), "plain")
      assert.strictEqual((yield* rowsOf({ namespace: "rolled" })).length, 0)
    }))

  it.effect("takes its namespace from the client unless configured", () =>
    Effect.gen(function*() {
      const fromClient = yield* Effect.provide(Outbox.Outbox, Outbox.layer().pipe(Layer.provide(clientFor("ns-x"))))
      const explicit = yield* Effect.provide(Outbox.Outbox, Outbox.layer({ namespace: "ns-y" }))
      const configured = yield* Effect.provide(
        Outbox.Outbox,
        Outbox.layerConfig().pipe(
          Layer.provide(clientFor("ns-x")),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson({ EVENTODB_OUTBOX_NAMESPACE: "ns-z" })))
        )
      )

      assert.deepStrictEqual([fromClient.namespace, explicit.namespace, configured.namespace], ["ns-x", "ns-y", "ns-z"])
      yield* configured.write("configured-1", { type: "T", data: {} })
      assert.strictEqual((yield* rowsOf({ namespace: "ns-z" })).length, 1)
    }))

  it.effect("fails with SqlError, not a defect, when its own transaction loses the connection; writes nothing", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const url = yield* currentUrl
      const scope = yield* Scope.make()
      const writerPool = yield* Layer.buildWithScope(poolOn(url, 1), scope)
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // Another connection holds the stream's lock, so the write waits inside its transaction until terminated.
      const holder = yield* sql.withTransaction(
        Outbox.write("doomed-1", { type: "Held", data: {} }).pipe(
          Effect.zipLeft(Deferred.succeed(holding, undefined)),
          Effect.zipLeft(Deferred.await(release)),
          Effect.zipRight(Effect.fail("rolled back on purpose" as const))
        )
      ).pipe(Effect.exit, Effect.fork)
      yield* Deferred.await(holding)

      const writer = yield* Outbox.write("doomed-1", { type: "Lost", data: {} }).pipe(
        Effect.provide(Outbox.layer({ namespace: "app" })),
        Effect.provide(writerPool),
        Effect.exit,
        Effect.fork
      )
      yield* someoneWaitsForAdvisoryLock
      yield* sql`
        SELECT pg_terminate_backend(pid)
        FROM pg_locks
        WHERE locktype = 'advisory'
          AND NOT granted
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      `
      const exit = yield* Fiber.join(writer)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      yield* Scope.close(scope, Exit.void)

      assert.isTrue(Exit.isFailure(exit), "the write must fail")
      if (Exit.isFailure(exit)) {
        assert.deepStrictEqual([...Cause.defects(exit.cause)], [], Cause.pretty(exit.cause))
        const failure = Cause.failureOption(exit.cause)
        assert.isTrue(Option.isSome(failure) && failure.value._tag === "SqlError", Cause.pretty(exit.cause))
      }
      assert.deepStrictEqual(yield* rowsOf({ stream: "doomed-1" }), [])
    }))

  it.effect("loads internal/outbox.ts first without tripping over an import cycle", () =>
    Effect.gen(function*() {
      // A fresh Node process: vitest's module cache already holds Outbox.ts, which would hide the cycle.
      for (const module of ["./src/internal/outbox.ts", "./src/internal/idempotency.ts"]) {
        const result = yield* Effect.promise(() =>
          new Promise<{ readonly code: number | null; readonly stderr: string }>((resolve) => {
            const child = execFile(
              process.execPath,
              ["--import", "tsx", "-e", `await import(${JSON.stringify(module)})`],
              { cwd: process.cwd(), timeout: 30_000 },
              (_error, _stdout, stderr) => resolve({ code: child.exitCode, stderr })
            )
          })
        )
        assert.strictEqual(result.code, 0, `${module}: ${result.stderr}`)
      }
    }), { timeout: 60_000 })
})
