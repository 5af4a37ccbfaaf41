import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Outbox from "../src/Outbox.js"
import * as OutboxSender from "../src/OutboxSender.js"
import { eventually, freshCategory, makeEnv, mismatches, rowsOf, TestLayer } from "./OutboxSender.support.js"
import * as PgTest from "./support/PgTest.js"
import { spawnTs } from "./support/Processes.js"

const currentDatabaseUrl = Effect.flatMap(
  SqlClient,
  (sql) => Effect.map(sql<{ db: string }>`SELECT current_database() AS db`, (rows) => PgTest.databaseUrl(rows[0]!.db))
)

layer(TestLayer, { excludeTestServices: true, timeout: "90 seconds" })("OutboxSender after a crash", (it) => {
  it.scoped(
    "a sender killed mid-batch leaves neither duplicates nor gaps once another sender takes over",
    () =>
      Effect.gen(function*() {
        const env = yield* makeEnv()
        const category = freshCategory("killed")
        const streams = 40
        const entries = Array.from({ length: 400 }, (_, n) => ({
          stream: `${category}-${n % streams}`,
          message: { type: "Counted", data: { n } },
          // Half the streams check versions: a resend there meets a version conflict, not a duplicate id.
          options: (n % streams) % 2 === 0 ? { expectedVersion: Math.floor(n / streams) - 1 } : {}
        }))
        yield* env.provide(Outbox.writeBatch(entries))
        // Slow answers stretch each batch, so the kill lands between the server's answers and the batch's UPDATE.
        yield* env.proxy.latency("15 millis")
        const child = yield* spawnTs("test/OutboxSender.child.ts", {
          env: {
            DATABASE_URL: yield* currentDatabaseUrl,
            EVENTODB_URL: env.proxy.url,
            EVENTODB_TOKEN: Redacted.value(env.token)
          }
        })
        yield* Effect.orDie(child.waitForLine((line) => line === "started", "45 seconds"))
        const delivered = env.direct.categoryGet(category, { batchSize: -1 }).pipe(
          Effect.map((messages) => new Set(messages.map((message) => message.id))),
          Effect.orDie
        )
        yield* eventually(
          "the child sent some rows",
          Effect.map(delivered, (ids) => ids.size >= 20),
          "60 seconds",
          "5 millis"
        )

        yield* child.kill("SIGKILL")
        yield* child.exited

        const before = yield* rowsOf(env.namespace)
        const inEvento = yield* delivered
        const acceptedNotMarked = before.filter((row) => !row.sent && inEvento.has(row.id)).length
        assert.isAbove(acceptedNotMarked, 0, "the kill should leave accepted rows unmarked")
        assert.isBelow(inEvento.size, entries.length)
        yield* env.proxy.latency(0)

        const sent = yield* env.provide(OutboxSender.drain)

        assert.strictEqual(sent, before.filter((row) => !row.sent).length)
        assert.deepStrictEqual(yield* mismatches(env.namespace, env.direct), [])
        const after = yield* rowsOf(env.namespace)
        assert.isTrue(after.every((row) => row.sent && !row.parked && row.attempts === 0))
      }),
    120_000
  )
})
