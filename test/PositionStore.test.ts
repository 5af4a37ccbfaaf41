import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Migrations from "../src/Migrations.js"
import * as PositionStore from "../src/PositionStore.js"
import * as PgTest from "./support/PgTest.js"

const Database = Layer.effectDiscard(Migrations.up()).pipe(Layer.provideMerge(PgTest.layer))

const emptyTable = Layer.effectDiscard(
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`TRUNCATE evento_consumer_positions`)
)

// The same cases run over both layers; each test gets a fresh store (an emptied table, or a new memory).
const kinds = [
  { name: "SQL layer", layer: Layer.merge(PositionStore.layer, emptyTable) },
  { name: "memory layer", layer: PositionStore.layerMemory }
] as const

const key = (consumerId: string, category = "order", namespace = "shop"): PositionStore.ConsumerKey => ({
  namespace,
  category,
  consumerId
})

it.layer(Database, { timeout: "60 seconds" })("PositionStore", (it) => {
  for (const kind of kinds) {
    describe(kind.name, () => {
      const test = <A, E>(name: string, body: () => Effect.Effect<A, E, PositionStore.PositionStore>) =>
        it.effect(name, () => Effect.provide(body(), kind.layer))

      test("has no position for a consumer that never saved one", () =>
        Effect.gen(function*() {
          assert.isTrue(Option.isNone(yield* PositionStore.load(key("fresh"))))
        }))

      test("loads what was saved, telling a saved 0 apart from none", () =>
        Effect.gen(function*() {
          yield* PositionStore.save(key("zero"), 0)
          yield* PositionStore.save(key("seven"), 7)

          assert.deepStrictEqual(yield* PositionStore.load(key("zero")), Option.some(0))
          assert.deepStrictEqual(yield* PositionStore.load(key("seven")), Option.some(7))
        }))

      test("never moves a position backwards on save", () =>
        Effect.gen(function*() {
          yield* PositionStore.save(key("c"), 10)
          yield* PositionStore.save(key("c"), 5)
          assert.deepStrictEqual(yield* PositionStore.load(key("c")), Option.some(10))

          yield* PositionStore.save(key("c"), 11)
          assert.deepStrictEqual(yield* PositionStore.load(key("c")), Option.some(11))
        }))

      test("moves back on reset, and saves go on from there", () =>
        Effect.gen(function*() {
          yield* PositionStore.save(key("r"), 100)

          yield* PositionStore.reset(key("r"), 3)
          assert.deepStrictEqual(yield* PositionStore.load(key("r")), Option.some(3))

          yield* PositionStore.save(key("r"), 4)
          assert.deepStrictEqual(yield* PositionStore.load(key("r")), Option.some(4))
          yield* PositionStore.reset(key("never-saved"), 9)
          assert.deepStrictEqual(yield* PositionStore.load(key("never-saved")), Option.some(9))
        }))

      test("keeps consumers apart by namespace, category and consumer id", () =>
        Effect.gen(function*() {
          yield* PositionStore.save(key("member-0"), 10)
          yield* PositionStore.save(key("member-1"), 20)
          yield* PositionStore.save(key("member-0", "invoice"), 30)
          yield* PositionStore.save(key("member-0", "order", "other-shop"), 40)

          const loaded = yield* Effect.all([
            PositionStore.load(key("member-0")),
            PositionStore.load(key("member-1")),
            PositionStore.load(key("member-0", "invoice")),
            PositionStore.load(key("member-0", "order", "other-shop")),
            PositionStore.load(key("member-2"))
          ])
          assert.deepStrictEqual(loaded, [
            Option.some(10),
            Option.some(20),
            Option.some(30),
            Option.some(40),
            Option.none()
          ])
        }))

      test("refuses empty key fields and positions that are not non-negative safe integers, saving nothing", () =>
        Effect.gen(function*() {
          const refusedWith = (reason: string, effect: Effect.Effect<unknown, unknown, PositionStore.PositionStore>) =>
            Effect.gen(function*() {
              const error = yield* Effect.flip(effect)
              assert.instanceOf(error, PositionStore.InvalidConsumerInput, JSON.stringify(error))
              assert.strictEqual((error as PositionStore.InvalidConsumerInput).reason, reason)
            })
          const badKeys = [
            ["invalid-namespace", key("c", "order", "")],
            ["invalid-category", key("c", "")],
            ["invalid-consumer-id", key("")],
            ["invalid-namespace", null as unknown as PositionStore.ConsumerKey]
          ] as const
          for (const [reason, bad] of badKeys) {
            yield* refusedWith(reason, PositionStore.load(bad))
            yield* refusedWith(reason, PositionStore.save(bad, 1))
            yield* refusedWith(reason, PositionStore.reset(bad, 1))
          }
          for (const position of [-5, -1, 1.5, Number.NaN, Infinity, 2 ** 53, "3" as unknown as number]) {
            yield* refusedWith("invalid-position", PositionStore.save(key("p"), position))
            yield* refusedWith("invalid-position", PositionStore.reset(key("p"), position))
          }
          yield* PositionStore.save(key("kept"), 4)
          yield* refusedWith("invalid-position", PositionStore.reset(key("kept"), -7))

          assert.isTrue(Option.isNone(yield* PositionStore.load(key("p"))))
          assert.deepStrictEqual(yield* PositionStore.load(key("kept")), Option.some(4))
        }))

      test("keeps the highest of many concurrent saves", () =>
        Effect.gen(function*() {
          const positions = [5, 50, 17, 49, 3, 12, 48, 1, 33, 21]

          yield* Effect.all(positions.map((position) => PositionStore.save(key("racer"), position)), {
            concurrency: "unbounded"
          })

          assert.deepStrictEqual(yield* PositionStore.load(key("racer")), Option.some(50))
        }))
    })
  }

  describe("SQL layer only", () => {
    it.effect("joins the caller's transaction: a save rolled back with it is gone", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* PositionStore.save(key("tx"), 1)

        yield* Effect.flip(sql.withTransaction(
          Effect.zipRight(PositionStore.save(key("tx"), 2), Effect.fail("handler failed" as const))
        ))
        yield* sql.withTransaction(PositionStore.reset(key("tx-committed"), 5))

        assert.deepStrictEqual(yield* PositionStore.load(key("tx")), Option.some(1))
        assert.deepStrictEqual(yield* PositionStore.load(key("tx-committed")), Option.some(5))
      }).pipe(Effect.provide(PositionStore.layer)))

    it.effect("stores positions beyond 2^31 without loss", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* PositionStore.save(key("big"), 2 ** 40 + 1)

        assert.deepStrictEqual(yield* PositionStore.load(key("big")), Option.some(2 ** 40 + 1))
        const [row] = yield* sql<{ position: string }>`
          SELECT position::text AS position FROM evento_consumer_positions WHERE consumer_id = 'big'
        `
        assert.strictEqual(row?.position, "1099511627777")
      }).pipe(Effect.provide(PositionStore.layer)))
  })
})
