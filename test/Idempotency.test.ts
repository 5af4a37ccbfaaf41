import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type { Message } from "../src/EventoClient.js"
import * as Idempotency from "../src/Idempotency.js"
import * as Migrations from "../src/Migrations.js"
import * as PositionStore from "../src/PositionStore.js"
import * as PgTest from "./support/PgTest.js"

/** Makes every stored mark older by `duration`: the database's rows, or the memory layer's clock. */
class Age extends Context.Tag("test/Age")<Age, (duration: Duration.DurationInput) => Effect.Effect<void>>() {}

const Database = Layer.effectDiscard(Migrations.up()).pipe(Layer.provideMerge(PgTest.layer))

const sqlKind = Layer.mergeAll(
  Idempotency.layer,
  PositionStore.layer,
  Layer.effectDiscard(Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`TRUNCATE evento_processed_events, evento_consumer_positions`
  )),
  Layer.effect(
    Age,
    Effect.map(SqlClient.SqlClient, (sql) => (duration: Duration.DurationInput) =>
      sql`
        UPDATE evento_processed_events
        SET processed_at = processed_at - make_interval(secs => ${Duration.toSeconds(duration)})
      `.pipe(Effect.asVoid, Effect.orDie))
  )
)

const memoryKind = Layer.mergeAll(
  Idempotency.layerMemory,
  PositionStore.layerMemory,
  Layer.succeed(Age, (duration: Duration.DurationInput) => TestClock.adjust(duration))
)

// The same cases run over both layers; each test gets fresh stores (emptied tables, or new memory).
const kinds = [{ name: "SQL layer", layer: sqlKind }, { name: "memory layer", layer: memoryKind }] as const

const key = (consumerId: string, category = "order", namespace = "shop"): PositionStore.ConsumerKey => ({
  namespace,
  category,
  consumerId
})

const message = (n: number): Message => ({
  id: `00000000-0000-4000-8000-${n.toString().padStart(12, "0")}`,
  streamName: `order-${n}`,
  type: "Placed",
  position: 0,
  globalPosition: n,
  data: { n },
  metadata: Option.none(),
  time: new Date(0)
})

it.layer(Database, { timeout: "60 seconds" })("Idempotency", (it) => {
  for (const kind of kinds) {
    describe(kind.name, () => {
      const test = <A, E>(
        name: string,
        body: () => Effect.Effect<A, E, Idempotency.Idempotency | PositionStore.PositionStore | Age>
      ) => it.effect(name, () => Effect.provide(body(), kind.layer))

      test("has nothing processed by default", () =>
        Effect.gen(function*() {
          assert.isFalse(yield* Idempotency.isProcessed(key("fresh"), message(1).id))
        }))

      test("marks an event processed for the consumer that marked it", () =>
        Effect.gen(function*() {
          yield* Idempotency.markProcessed(key("projector"), message(1))

          assert.isTrue(yield* Idempotency.isProcessed(key("projector"), message(1).id))
          assert.isTrue(yield* Idempotency.isProcessed(key("projector"), message(1).id.toUpperCase()))
          assert.isFalse(yield* Idempotency.isProcessed(key("projector"), message(2).id))
        }))

      test("keeps the marks of two consumers of one category apart", () =>
        Effect.gen(function*() {
          yield* Idempotency.markProcessed(key("member-0"), message(1))
          yield* Idempotency.markProcessed(key("member-1"), message(2))

          const seen = yield* Effect.all([
            Idempotency.isProcessed(key("member-0"), message(1).id),
            Idempotency.isProcessed(key("member-1"), message(1).id),
            Idempotency.isProcessed(key("member-1"), message(2).id),
            Idempotency.isProcessed(key("member-0"), message(2).id),
            Idempotency.isProcessed(key("member-0", "invoice"), message(1).id),
            Idempotency.isProcessed(key("member-0", "order", "other-shop"), message(1).id)
          ])
          assert.deepStrictEqual(seen, [true, false, true, false, false, false])

          // Marking the same event for the other consumer is a mark of its own, not a conflict.
          yield* Idempotency.markProcessed(key("member-1"), message(1))
          assert.isTrue(yield* Idempotency.isProcessed(key("member-1"), message(1).id))
        }))

      test("refuses bad keys, event ids that are not UUIDs and bad positions, marking nothing", () =>
        Effect.gen(function*() {
          const refusedWith = (reason: string, effect: Effect.Effect<unknown, unknown, Idempotency.Idempotency>) =>
            Effect.gen(function*() {
              const error = yield* Effect.flip(effect)
              assert.instanceOf(error, PositionStore.InvalidConsumerInput, JSON.stringify(error))
              assert.strictEqual((error as PositionStore.InvalidConsumerInput).reason, reason)
            })
          const badKeys = [
            ["invalid-namespace", key("c", "order", "")],
            ["invalid-category", key("c", "")],
            ["invalid-consumer-id", key("")]
          ] as const
          for (const [reason, bad] of badKeys) {
            yield* refusedWith(reason, Idempotency.isProcessed(bad, message(1).id))
            yield* refusedWith(reason, Idempotency.markProcessed(bad, message(1)))
          }
          for (const id of ["zzz", "", "00000000-0000-4000-8000-00000000000g", 7 as unknown as string]) {
            yield* refusedWith("invalid-event-id", Idempotency.isProcessed(key("p"), id))
            yield* refusedWith("invalid-event-id", Idempotency.markProcessed(key("p"), { ...message(1), id }))
          }
          for (const globalPosition of [-1, 1.5, Number.NaN]) {
            yield* refusedWith(
              "invalid-position",
              Idempotency.markProcessed(key("p"), { ...message(2), globalPosition })
            )
          }

          const seen = yield* Effect.all([1, 2].map((n) => Idempotency.isProcessed(key("p"), message(n).id)))
          assert.deepStrictEqual(seen, [false, false])
          assert.isFalse(yield* Idempotency.isProcessed(key("c", "order", "x"), message(1).id))
        }))

      test("treats a second mark of the same event as a no-op", () =>
        Effect.gen(function*() {
          yield* Idempotency.markProcessed(key("twice"), message(1))
          yield* Idempotency.markProcessed(key("twice"), { ...message(1), globalPosition: 99 })

          assert.isTrue(yield* Idempotency.isProcessed(key("twice"), message(1).id))
          // One mark, still at the first global position: with the position at 1, cleanup can remove it.
          yield* PositionStore.save(key("twice"), 1)
          yield* (yield* Age)("2 hours")
          assert.strictEqual(yield* Idempotency.cleanup({ olderThan: "1 hour" }), 1)
        }))

      test("cleans up marks older than olderThan and keeps newer ones", () =>
        Effect.gen(function*() {
          const age = yield* Age
          yield* PositionStore.save(key("projector"), 100)
          yield* Idempotency.markProcessed(key("projector"), message(1))
          yield* Idempotency.markProcessed(key("projector"), message(2))
          yield* age("2 hours")
          yield* Idempotency.markProcessed(key("projector"), message(3))

          const removed = yield* Idempotency.cleanup({ olderThan: "1 hour" })

          assert.strictEqual(removed, 2)
          const left = yield* Effect.all([1, 2, 3].map((n) => Idempotency.isProcessed(key("projector"), message(n).id)))
          assert.deepStrictEqual(left, [false, false, true])
          assert.strictEqual(yield* Idempotency.cleanup({ olderThan: "1 hour" }), 0)
        }))
    })
  }

  describe("SQL layer only", () => {
    const sqlTest = <A, E>(
      name: string,
      body: () => Effect.Effect<
        A,
        E,
        Idempotency.Idempotency | PositionStore.PositionStore | Age | SqlClient.SqlClient
      >
    ) => it.effect(name, () => Effect.provide(body(), sqlKind))

    sqlTest("records the message's global position, event type and consumer", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Idempotency.markProcessed(key("projector"), { ...message(7), globalPosition: 2 ** 40 })

        const rows = yield* sql`
          SELECT event_id::text AS event_id, namespace, category, consumer_id, event_type,
            global_position::text AS global_position
          FROM evento_processed_events
        `
        assert.deepStrictEqual(rows, [{
          event_id: message(7).id,
          namespace: "shop",
          category: "order",
          consumer_id: "projector",
          event_type: "Placed",
          global_position: String(2 ** 40)
        }])
      }))

    sqlTest(
      "keeps old marks above the consumer's saved position, and those of a consumer with none",
      () =>
        Effect.gen(function*() {
          const age = yield* Age
          yield* PositionStore.save(key("behind"), 5)
          yield* Idempotency.markProcessed(key("behind"), message(5))
          yield* Idempotency.markProcessed(key("behind"), message(6))
          yield* Idempotency.markProcessed(key("unsaved"), message(5))
          yield* age("2 hours")

          assert.strictEqual(yield* Idempotency.cleanup({ olderThan: "1 hour" }), 1)

          const left = yield* Effect.all([
            Idempotency.isProcessed(key("behind"), message(5).id),
            Idempotency.isProcessed(key("behind"), message(6).id),
            Idempotency.isProcessed(key("unsaved"), message(5).id)
          ])
          assert.deepStrictEqual(left, [false, true, true])
        })
    )

    sqlTest("cleans up version-1 marks, which have no global position, by age alone", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`
          INSERT INTO evento_processed_events (event_id, namespace, event_type, category, consumer_id, processed_at)
          VALUES (${message(1).id}, 'shop', 'Placed', 'order', 'legacy', now() - interval '2 hours'),
            (${message(2).id}, 'shop', 'Placed', 'order', 'legacy', now())
        `

        assert.strictEqual(yield* Idempotency.cleanup({ olderThan: "1 hour" }), 1)

        assert.isFalse(yield* Idempotency.isProcessed(key("legacy"), message(1).id))
        assert.isTrue(yield* Idempotency.isProcessed(key("legacy"), message(2).id))
      }))

    sqlTest("joins the caller's transaction with the position: both commit or neither", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const handle = (n: number, fail: boolean) =>
          sql.withTransaction(Effect.gen(function*() {
            yield* Idempotency.markProcessed(key("tx"), message(n))
            yield* PositionStore.save(key("tx"), n)
            if (fail) return yield* Effect.fail("crash before commit" as const)
          }))

        yield* handle(1, false)
        yield* Effect.flip(handle(2, true))

        assert.isTrue(yield* Idempotency.isProcessed(key("tx"), message(1).id))
        assert.isFalse(yield* Idempotency.isProcessed(key("tx"), message(2).id))
        assert.deepStrictEqual(yield* PositionStore.load(key("tx")), Option.some(1))
      }))
  })
})
