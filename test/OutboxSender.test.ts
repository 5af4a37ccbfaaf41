import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { EventoError } from "../src/EventoError.js"
import * as internal from "../src/internal/sender.js"
import * as Outbox from "../src/Outbox.js"
import * as OutboxSender from "../src/OutboxSender.js"
import { freshCategory, idsIn, makeEnv, mismatches, rowOf, rowsOf, TestLayer } from "./OutboxSender.support.js"

const decodeError = Schema.decodeUnknownSync(Schema.parseJson(EventoError))

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("OutboxSender", (it) => {
  it.scoped("delivers unsent rows with the outbox id as message id, in seq order, and marks them sent", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const a = `${freshCategory("order")}-1`
      const b = `${freshCategory("order")}-2`
      const written = yield* env.provide(Outbox.writeBatch([
        { stream: a, message: { type: "Placed", data: { n: 1 } } },
        { stream: b, message: { type: "Placed", data: { n: 2 }, metadata: { correlationStreamName: "flow-1" } } },
        { stream: a, message: { type: "Paid", data: { n: 3 } } },
        { stream: b, message: { type: "Paid", data: { n: 4 } }, options: { expectedVersion: 0 } },
        { stream: a, message: { type: "Shipped", data: { n: 5 } }, options: { expectedVersion: 1 } }
      ]))
      const sentBefore = yield* Metric.value(internal.metrics.sent.pipe(Metric.tagged("namespace", env.namespace)))

      const sent = yield* env.provide(OutboxSender.drain)

      assert.strictEqual(sent, 5)
      assert.deepStrictEqual(yield* idsIn(env.direct, a), [written[0]!, written[2]!, written[4]!])
      assert.deepStrictEqual(yield* idsIn(env.direct, b), [written[1]!, written[3]!])
      const messages = yield* env.direct.streamGet(b)
      assert.deepStrictEqual(messages.map((m) => [m.type, m.data, Option.getOrNull(m.metadata)]), [
        ["Placed", { n: 2 }, { correlationStreamName: "flow-1" }],
        ["Paid", { n: 4 }, null]
      ])
      const rows = yield* rowsOf(env.namespace)
      assert.isTrue(rows.every((row) => row.sent && row.attempts === 0 && row.last_error === null))
      const sentAfter = yield* Metric.value(internal.metrics.sent.pipe(Metric.tagged("namespace", env.namespace)))
      assert.strictEqual(sentAfter.count - sentBefore.count, 5)
      assert.strictEqual(yield* env.provide(OutboxSender.drain), 0)
    }))

  it.scoped("marks a row sent without a duplicate when EventoDB accepted it before the sender could mark it", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const plain = `${freshCategory("crash")}-1`
      const versioned = `${freshCategory("crash")}-2`
      const message = { type: "Happened", data: { n: 1 } }
      const [plainId, versionedId, laterId] = yield* env.provide(Outbox.writeBatch([
        { stream: plain, message },
        { stream: versioned, message, options: { expectedVersion: -1 } },
        { stream: versioned, message: { type: "Later", data: {} }, options: { expectedVersion: 0 } }
      ]))
      // What a sender that died between the server's answer and its UPDATE left behind: the messages are in
      // EventoDB, the rows are not marked.
      yield* env.direct.streamWrite(plain, message, { id: plainId! })
      yield* env.direct.streamWrite(versioned, message, { id: versionedId!, expectedVersion: -1 })

      const sent = yield* env.provide(OutboxSender.drain)

      assert.strictEqual(sent, 3)
      assert.deepStrictEqual(yield* idsIn(env.direct, plain), [plainId!])
      assert.deepStrictEqual(yield* idsIn(env.direct, versioned), [versionedId!, laterId!])
      const rows = yield* rowsOf(env.namespace)
      assert.isTrue(rows.every((row) => row.sent && !row.parked && row.attempts === 0))
    }))

  it.scoped("a send that times out costs no attempt and goes out once when EventoDB answers again", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv({ timeout: "300 millis" })
      const plain = `${freshCategory("late")}-1`
      const versioned = `${freshCategory("late")}-2`
      yield* env.provide(Outbox.writeBatch([
        { stream: plain, message: { type: "A", data: {} } },
        { stream: versioned, message: { type: "B", data: {} }, options: { expectedVersion: -1 } },
        { stream: plain, message: { type: "C", data: {} } },
        { stream: versioned, message: { type: "D", data: {} }, options: { expectedVersion: 0 } }
      ]))
      yield* env.proxy.stall("1 second")

      const stopped = yield* env.provide(OutboxSender.drainWith({ maxAttempts: 1 })).pipe(Effect.flip)

      assert.strictEqual(stopped._tag, "EventoTimeout")
      const waiting = yield* rowsOf(env.namespace)
      assert.isTrue(waiting.every((row) => !row.sent && !row.parked && row.attempts === 0))
      assert.isTrue(
        waiting.some((row) => row.last_error !== null && decodeError(row.last_error)._tag === "EventoTimeout")
      )
      yield* Effect.sleep("1 second")

      assert.strictEqual(yield* env.provide(OutboxSender.drainWith({ maxAttempts: 1 })), 4)
      assert.deepStrictEqual(yield* mismatches(env.namespace, env.direct), [])
    }))

  it.scoped("a version conflict parks its row, blocks only its stream, shows in the backlog and can be requeued", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const blocked = `${freshCategory("conflict")}-1`
      const free = `${freshCategory("conflict")}-2`
      // The row expects the stream to hold one message already; it holds none yet.
      const [conflicting, behind, other] = yield* env.provide(Outbox.writeBatch([
        { stream: blocked, message: { type: "Second", data: {} }, options: { expectedVersion: 0 } },
        { stream: blocked, message: { type: "Third", data: {} } },
        { stream: free, message: { type: "Elsewhere", data: {} } }
      ]))

      assert.strictEqual(yield* env.provide(OutboxSender.drain), 1)

      const parkedRow = yield* rowOf(conflicting!)
      assert.isTrue(parkedRow.parked)
      assert.isFalse(parkedRow.sent)
      assert.strictEqual(parkedRow.attempts, 1)
      assert.strictEqual(decodeError(parkedRow.last_error)._tag, "StreamVersionConflict")
      const behindRow = yield* rowOf(behind!)
      assert.isFalse(behindRow.sent || behindRow.parked)
      assert.isTrue((yield* rowOf(other!)).sent)
      assert.deepStrictEqual(yield* idsIn(env.direct, blocked), [])

      const backlog = yield* OutboxSender.backlog(env.namespace)
      assert.strictEqual(backlog.unsent, 2)
      assert.strictEqual(backlog.parked, 1)
      assert.isTrue(Option.isSome(backlog.oldestUnsentAge))
      const listed = yield* OutboxSender.parked(env.namespace)
      assert.deepStrictEqual(listed.map((row) => row.id), [conflicting])
      assert.strictEqual(Option.getOrThrow(listed[0]!.error)._tag, "StreamVersionConflict")
      // Parked rows stay put however often the sender runs.
      assert.strictEqual(yield* env.provide(OutboxSender.drain), 0)

      // The operator supplies what was missing, then requeues.
      const first = yield* env.direct.streamWrite(blocked, { type: "First", data: {} })
      assert.strictEqual(first.position, 0)
      assert.strictEqual(yield* OutboxSender.requeue([conflicting!, other!]), 1)
      assert.strictEqual(yield* env.provide(OutboxSender.drain), 2)

      const ids = yield* idsIn(env.direct, blocked)
      assert.deepStrictEqual(ids.slice(1), [conflicting!, behind!])
      assert.strictEqual((yield* OutboxSender.backlog(env.namespace)).unsent, 0)
    }))

  it.scoped("a discarded parked row lets the rest of its stream go", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const stream = `${freshCategory("discard")}-1`
      const [doomed, next] = yield* env.provide(Outbox.writeBatch([
        { stream, message: { type: "Wrong", data: {} }, options: { expectedVersion: 5 } },
        { stream, message: { type: "Right", data: {} } }
      ]))
      assert.strictEqual(yield* env.provide(OutboxSender.drain), 0)
      assert.strictEqual(yield* OutboxSender.discard([next!]), 0, "only parked rows are discarded")

      assert.strictEqual(yield* OutboxSender.discard([doomed!]), 1)
      assert.strictEqual(yield* env.provide(OutboxSender.drain), 1)

      assert.deepStrictEqual(yield* idsIn(env.direct, stream), [next!])
      assert.strictEqual((yield* OutboxSender.backlog(env.namespace)).unsent, 0)
    }))

  it.scoped("parks a row EventoDB would refuse, and a row that does not decode, without blocking other streams", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const sql = yield* SqlClient
      const broken = `${freshCategory("broken")}-1`
      const invalid = `${freshCategory("invalid")}-1`
      const fine = `${freshCategory("fine")}-1`
      // Rows a version 1 writer (or a hand-written INSERT) could leave: data that is not an object, an empty type.
      yield* sql`
        INSERT INTO evento_outbox (namespace, stream, type, data)
        VALUES (${env.namespace}, ${broken}, 'Listed', '[1, 2]'::jsonb),
               (${env.namespace}, ${invalid}, '', '{}'::jsonb)
      `
      const [afterBroken, good] = yield* env.provide(Outbox.writeBatch([
        { stream: broken, message: { type: "Fine", data: {} } },
        { stream: fine, message: { type: "Fine", data: {} } }
      ]))

      assert.strictEqual(yield* env.provide(OutboxSender.drain), 1)

      const rows = yield* rowsOf(env.namespace)
      const byStream = (stream: string) => rows.filter((row) => row.stream === stream)
      assert.isTrue(byStream(broken)[0]!.parked)
      assert.match(byStream(broken)[0]!.last_error ?? "", /does not decode/)
      assert.isFalse((yield* rowOf(afterBroken!)).sent)
      assert.isTrue(byStream(invalid)[0]!.parked)
      assert.strictEqual(decodeError(byStream(invalid)[0]!.last_error)._tag, "InvalidRequest")
      assert.deepStrictEqual(yield* idsIn(env.direct, fine), [good!])
    }))

  it.scoped("more than two batches of parked rows at the head of the queue do not hold back a later healthy stream", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const category = freshCategory("jam")
      const options = { batchSize: 5 } as const
      // Twelve streams whose first row conflicts (the streams are empty) and is parked, each with a row behind it.
      yield* env.provide(Outbox.writeBatch(Array.from({ length: 24 }, (_, n) => ({
        stream: `${category}-${n % 12}`,
        message: { type: "Stuck", data: { n } },
        options: n < 12 ? { expectedVersion: 3 } : {}
      }))))
      assert.strictEqual(yield* env.provide(OutboxSender.drainWith(options)), 0)
      const stuck = yield* rowsOf(env.namespace)
      assert.strictEqual(stuck.filter((row) => row.parked).length, 12)

      const healthy = `${freshCategory("jam")}-ok`
      const written = yield* env.provide(Outbox.writeBatch(Array.from({ length: 3 }, (_, n) => ({
        stream: healthy,
        message: { type: "Fine", data: { n } }
      }))))

      assert.strictEqual(yield* env.provide(OutboxSender.drainWith(options)), 3)
      assert.deepStrictEqual(yield* idsIn(env.direct, healthy), written)
      const rows = yield* rowsOf(env.namespace)
      assert.strictEqual(rows.filter((row) => row.parked).length, 12)
      assert.isTrue(rows.filter((row) => !row.parked && row.stream !== healthy).every((row) => !row.sent))
    }))

  it.scoped("a row whose own sends keep failing with 5xx is parked after maxAttempts; its stream waits meanwhile", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const stream = `${freshCategory("flaky")}-1`
      const [id, behind] = yield* env.provide(Outbox.writeBatch([
        { stream, message: { type: "A", data: {} } },
        { stream, message: { type: "B", data: {} } }
      ]))
      const options = { maxAttempts: 3, backoff: { initial: "200 millis", max: "200 millis", jitter: false } } as const
      const failOnce = env.proxy.failNext(1, 500, { error: { code: "BACKEND_ERROR", message: "disk on fire" } })

      for (const attempt of [1, 2]) {
        yield* failOnce
        // The failed send counts (the server answers the probe that follows); the row then waits its backoff.
        assert.strictEqual(yield* env.provide(OutboxSender.drainWith(options)), 0)
        const row = yield* rowOf(id!)
        assert.strictEqual(row.attempts, attempt)
        assert.isFalse(row.parked)
        assert.isFalse((yield* rowOf(behind!)).sent)
        yield* Effect.sleep("250 millis")
      }
      yield* failOnce
      assert.strictEqual(yield* env.provide(OutboxSender.drainWith(options)), 0)

      const row = yield* rowOf(id!)
      assert.isTrue(row.parked)
      assert.strictEqual(row.attempts, 3)
      const error = decodeError(row.last_error)
      assert.strictEqual(error._tag, "EventoServerError")
      assert.deepStrictEqual(yield* idsIn(env.direct, stream), [])
    }))
})
