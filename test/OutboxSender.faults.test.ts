import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import * as EventoClientModule from "../src/EventoClient.js"
import { EventoError } from "../src/EventoError.js"
import * as Outbox from "../src/Outbox.js"
import * as OutboxSender from "../src/OutboxSender.js"
import {
  allSent,
  eventually,
  freshCategory,
  makeEnv,
  mismatches,
  quick,
  rowsOf,
  TestLayer
} from "./OutboxSender.support.js"
import * as EventoTest from "./support/EventoTest.js"

const decodeError = Schema.decodeUnknownSync(Schema.parseJson(EventoError))

/** A small seeded generator (mulberry32), so a failing chaos run can be replayed from its seed. */
const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

layer(TestLayer, { excludeTestServices: true, timeout: "90 seconds" })("OutboxSender under faults", (it) => {
  it.scoped("a token the server refuses pauses the sender with an error log and parks nothing; a valid one resumes", () =>
    Effect.gen(function*() {
      const target = yield* EventoTest.EventoTarget
      // A well-formed token for a namespace that does not exist yet: the server answers 403.
      const namespace = `test-auth-${randomBytes(4).toString("hex")}`
      const token = `ns_${Buffer.from(namespace).toString("base64url")}_${randomBytes(32).toString("hex")}`
      const client = yield* Effect.orDie(EventoClientModule.make({ url: target.url, token }))
      const logs: Array<{ readonly level: string; readonly text: string }> = []
      const capture = Logger.make(({ logLevel, message }) => {
        logs.push({ level: logLevel.label, text: JSON.stringify(message) })
      })
      const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        effect.pipe(
          Effect.provideService(EventoClientModule.EventoClient, client),
          Effect.provide(Outbox.layer({ namespace }))
        )
      const category = freshCategory("auth")
      yield* provide(Outbox.writeBatch(Array.from({ length: 6 }, (_, n) => ({
        stream: `${category}-${n % 3}`,
        message: { type: "Waiting", data: { n } },
        options: n < 3 ? { expectedVersion: -1 } : {}
      }))))

      yield* provide(OutboxSender.run({ ...quick, maxAttempts: 1 })).pipe(
        Effect.provide(Logger.add(capture)),
        Effect.forkScoped
      )
      yield* eventually(
        "the sender paused",
        Effect.sync(() => logs.filter((log) => log.level === "ERROR" && log.text.includes("paused")).length >= 2)
      )

      const paused = yield* rowsOf(namespace)
      assert.strictEqual(paused.length, 6)
      assert.isTrue(paused.every((row) => !row.sent && !row.parked && row.attempts === 0))
      const errors = paused.flatMap((row) => row.last_error === null ? [] : [decodeError(row.last_error)])
      assert.isAbove(errors.length, 0)
      assert.isTrue(errors.every((error) => error._tag === "EventoAuthError"))

      // The namespace appears with this very token (what a completed rotation looks like to the sender).
      yield* Effect.acquireRelease(
        EventoTest.adminRpc(target, ["ns.create", namespace, { token }]),
        () => EventoTest.adminRpc(target, ["ns.delete", namespace]).pipe(Effect.catchAllDefect(() => Effect.void))
      )
      yield* eventually("the sender resumed", allSent(namespace))

      const ids = yield* Effect.orDie(client.categoryGet(category, { batchSize: -1 }))
      assert.strictEqual(ids.length, 6)
      assert.deepStrictEqual(yield* mismatches(namespace, client), [])
      assert.isFalse(logs.some((log) => log.text.includes("parked")))
    }))

  it.scoped("while EventoDB is down, writes succeed, no attempt is counted, and everything goes out after", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const category = freshCategory("down")
      yield* env.proxy.down()
      // One counted attempt would park a row at once: any attempt spent on the outage shows.
      yield* env.provide(OutboxSender.run({ ...quick, maxAttempts: 1 })).pipe(Effect.forkScoped)

      for (let round = 0; round < 8; round++) {
        yield* env.provide(Outbox.writeBatch(Array.from({ length: 5 }, (_, n) => ({
          stream: `${category}-${n}`,
          message: { type: "Written", data: { round, n } },
          options: { expectedVersion: round - 1 }
        }))))
        yield* Effect.sleep("100 millis")
      }

      const during = yield* rowsOf(env.namespace)
      assert.strictEqual(during.length, 40)
      assert.isTrue(during.every((row) => !row.sent && !row.parked && row.attempts === 0))
      assert.isTrue(
        during.some((row) => row.last_error !== null && decodeError(row.last_error)._tag === "EventoUnavailable")
      )
      yield* env.proxy.up()

      yield* eventually("the backlog drained", allSent(env.namespace))
      assert.deepStrictEqual(yield* mismatches(env.namespace, env.direct), [])
      const after = yield* rowsOf(env.namespace)
      assert.isTrue(after.every((row) => row.attempts === 0 && !row.parked))
    }))

  it.scoped("5xx answers from a server that is down count against no row", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const category = freshCategory("fivexx")
      yield* env.proxy.failNext(1_000_000, 503, { error: { code: "BACKEND_ERROR", message: "database unavailable" } })
      yield* env.provide(Outbox.writeBatch(Array.from({ length: 10 }, (_, n) => ({
        stream: `${category}-${n % 2}`,
        message: { type: "Written", data: { n } }
      }))))
      // Two attempts, not one: when the 503s stop, a send failed just before can meet a probe that succeeds, and
      // count once, which is right for a server that came back.
      yield* env.provide(OutboxSender.run({ ...quick, maxAttempts: 2 })).pipe(Effect.forkScoped)
      yield* eventually(
        "the sender met the 503s",
        Effect.map(rowsOf(env.namespace), (rows) => rows.some((row) => row.last_error !== null))
      )
      yield* Effect.sleep("500 millis")

      const during = yield* rowsOf(env.namespace)
      assert.isTrue(during.every((row) => !row.sent && !row.parked && row.attempts === 0))
      yield* env.proxy.reset()

      yield* eventually("the backlog drained", allSent(env.namespace))
      assert.deepStrictEqual(yield* mismatches(env.namespace, env.direct), [])
      assert.isTrue((yield* rowsOf(env.namespace)).every((row) => !row.parked && row.attempts <= 1))
    }))

  it.scoped("a row whose writes alone time out is retried and parked after maxAttempts while other streams go out", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv({ timeout: "300 millis" })
      const category = freshCategory("slow")
      const slow = `${category}-slow`
      // Only writes to the slow stream hang; its reads (the probe) and everything else pass.
      yield* env.proxy.latencyWhen(
        (request) => request.body.includes("\"stream.write\"") && request.body.includes(`"${slow}"`),
        "10 seconds"
      )
      const [slowId, behindId] = yield* env.provide(Outbox.writeBatch([
        { stream: slow, message: { type: "Big", data: {} } },
        { stream: slow, message: { type: "Behind", data: {} } },
        ...Array.from(
          { length: 6 },
          (_, n) => ({ stream: `${category}-${n % 3}`, message: { type: "Fine", data: { n } } })
        )
      ]))
      yield* env.provide(OutboxSender.run({ ...quick, maxAttempts: 3 })).pipe(Effect.forkScoped)

      const slowRow = Effect.map(rowsOf(env.namespace), (rows) => rows.find((row) => row.id === slowId)!)
      yield* eventually("the slow row failed once", Effect.map(slowRow, (row) => row.attempts >= 1), "10 seconds")
      // Written after the first timeout: a sender halted by it would still be backing off.
      yield* env.provide(Outbox.writeBatch(Array.from({ length: 6 }, (_, n) => ({
        stream: `${category}-${n % 3}`,
        message: { type: "Later", data: { n } }
      }))))
      yield* eventually("the slow row was parked", Effect.map(slowRow, (row) => row.parked), "10 seconds")
      yield* eventually(
        "the other streams were delivered",
        Effect.map(rowsOf(env.namespace), (rows) => rows.filter((row) => row.stream !== slow).every((row) => row.sent)),
        "10 seconds"
      )

      const rows = yield* rowsOf(env.namespace)
      const parked = rows.find((row) => row.id === slowId)!
      assert.strictEqual(parked.attempts, 3)
      assert.strictEqual(decodeError(parked.last_error)._tag, "EventoTimeout")
      const behind = rows.find((row) => row.id === behindId)!
      assert.isFalse(behind.sent || behind.parked)
      assert.strictEqual(rows.filter((row) => row.sent).length, 12)
      assert.deepStrictEqual(yield* Effect.orDie(env.direct.streamVersion(slow)), Option.none())
    }))

  it.scoped("a LISTEN connection terminated without a word is noticed and listened again, long before the poll", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const sql = yield* SqlClient
      const category = freshCategory("relisten")
      const listeners = sql<{ readonly pid: number }>`
        SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'
      `.pipe(Effect.map((rows) => rows.map((row) => row.pid)))
      const sent = (id: string) =>
        Effect.map(rowsOf(env.namespace), (rows) => rows.some((row) => row.id === id && row.sent))
      // The poll never comes within the test: only a notification (or a new LISTEN session) sends a row.
      yield* env.provide(OutboxSender.run({ ...quick, pollInterval: "5 minutes" })).pipe(Effect.forkScoped)
      yield* eventually("the sender listens", Effect.map(listeners, (pids) => pids.length > 0), "10 seconds")
      const [first] = yield* env.provide(
        Outbox.writeBatch([{ stream: `${category}-1`, message: { type: "A", data: {} } }])
      )
      yield* eventually("a notified row went out", sent(first!), "5 seconds")

      const killed = yield* listeners
      yield* Effect.forEach(killed, (pid) => sql`SELECT pg_terminate_backend(${pid})`, { discard: true })
      const [second] = yield* env.provide(
        Outbox.writeBatch([{ stream: `${category}-2`, message: { type: "B", data: {} } }])
      )

      yield* eventually("the row written after the kill went out", sent(second!), "20 seconds")
      const now = yield* listeners
      assert.isAbove(now.length, 0)
      assert.isFalse(now.some((pid) => killed.includes(pid)))
    }))

  it.scoped(
    "2,000 rows over 200 streams under random failures: each stream holds exactly its rows in seq order",
    () =>
      Effect.gen(function*() {
        const seed = Date.now() % 1_000_000
        const next = random(seed)
        const int = (n: number) => Math.floor(next() * n)
        const env = yield* makeEnv({ timeout: "500 millis" })
        const category = freshCategory("chaos")
        const streams = 200
        const written = new Array<number>(streams).fill(0)
        const entries = Array.from({ length: 2000 }, (_, n) => {
          const s = int(streams)
          const version = written[s]!
          written[s] = version + 1
          return {
            stream: `${category}-${s}`,
            message: { type: "Chaos", data: { n } },
            // A quarter of the streams check versions, so lost answers there come back as version conflicts.
            options: s % 4 === 0 ? { expectedVersion: version - 1 } : {}
          }
        })

        const sender = yield* env.provide(OutboxSender.run({ ...quick, maxAttempts: 1000 })).pipe(Effect.forkScoped)
        const chaos = yield* Effect.gen(function*() {
          const pick = next()
          if (pick < 0.3) {
            const status = [500, 502, 503][int(3)]!
            yield* env.proxy.failNext(1 + int(3), status, { error: { code: "BACKEND_ERROR", message: "injected" } })
          } else if (pick < 0.5) {
            yield* env.proxy.garbageNext(1 + int(2))
          } else if (pick < 0.65) {
            yield* env.proxy.down()
            yield* Effect.sleep(`${100 + int(200)} millis`)
            yield* env.proxy.up()
          } else if (pick < 0.75) {
            yield* env.proxy.stall(`${300 + int(500)} millis`)
          }
          yield* Effect.sleep(`${50 + int(100)} millis`)
        }).pipe(Effect.forever, Effect.forkScoped)

        for (let offset = 0; offset < entries.length; offset += 100) {
          yield* env.provide(Outbox.writeBatch(entries.slice(offset, offset + 100)))
          yield* Effect.sleep(`${int(50)} millis`)
        }
        yield* Effect.sleep("2 seconds")
        yield* Fiber.interrupt(chaos)
        yield* env.proxy.reset()
        yield* eventually(`the backlog drained (seed ${seed})`, allSent(env.namespace), "60 seconds", "100 millis")
        yield* Fiber.interrupt(sender)

        assert.deepStrictEqual(yield* mismatches(env.namespace, env.direct), [], `seed ${seed}`)
        const rows = yield* rowsOf(env.namespace)
        assert.strictEqual(rows.length, 2000)
        assert.isTrue(rows.every((row) => row.sent && !row.parked), `seed ${seed}`)
      }),
    120_000
  )
})
