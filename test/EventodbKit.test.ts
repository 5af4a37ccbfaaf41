import * as SqlClient from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as EventoClient from "../src/EventoClient.js"
import * as EventodbKit from "../src/EventodbKit.js"
import * as Idempotency from "../src/Idempotency.js"
import * as Migrations from "../src/Migrations.js"
import * as Outbox from "../src/Outbox.js"
import * as PositionStore from "../src/PositionStore.js"
import * as Singleton from "../src/Singleton.js"
import * as EventoTest from "./support/EventoTest.js"
import * as PgTest from "./support/PgTest.js"

/** Configuration for a fresh namespace and a fresh database, plus `extra` keys. */
const configFor = (extra: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const target = yield* EventoTest.EventoTarget
    const { namespace, token } = yield* EventoTest.freshNamespace
    const database = yield* PgTest.freshDatabase
    const entries: Record<string, string> = {
      EVENTODB_URL: target.url,
      EVENTODB_TOKEN: Redacted.value(token),
      DATABASE_URL: database.url,
      EVENTODB_OUTBOX_POLL_INTERVAL: "200 millis",
      ...extra
    }
    return { namespace, provider: ConfigProvider.fromMap(new Map(Object.entries(entries))) }
  })

/** Builds the kit in the current scope with the given configuration. */
const buildKit = (provider: ConfigProvider.ConfigProvider) =>
  Layer.build(EventodbKit.layerConfig()).pipe(Effect.withConfigProvider(provider))

const sentAt = (id: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ readonly sent_at: Date | null }>`SELECT sent_at FROM evento_outbox WHERE id = ${id}`
  ).pipe(
    Effect.map((rows) => Option.fromNullable(rows[0]?.sent_at))
  )

layer(EventoTest.layerTarget, { excludeTestServices: true, timeout: "60 seconds" })("EventodbKit", (it) => {
  it.scoped("layerConfig provides working services: migrated schema, outbox shipped, positions, marks, singleton", () =>
    Effect.gen(function*() {
      const { namespace, provider } = yield* configFor()
      const kit = yield* buildKit(provider)
      const run = <A, E>(effect: Effect.Effect<A, E, EventodbKit.Services>) => Effect.provide(effect, kit)

      assert.strictEqual(yield* run(Migrations.currentVersion), Migrations.latestVersion)
      assert.strictEqual(Context.get(kit, EventoClient.EventoClient).namespace, namespace)
      assert.strictEqual(Context.get(kit, Outbox.Outbox).namespace, namespace)

      // A business row and its event commit together; the kit's sender ships the event with the outbox id.
      const id = yield* run(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE accounts (id text PRIMARY KEY)`
        return yield* sql.withTransaction(
          Effect.zipRight(
            sql`INSERT INTO accounts (id) VALUES ('a1')`,
            Outbox.write("account-a1", { type: "Opened", data: { owner: "Ada" } }, { expectedVersion: -1 })
          )
        )
      }))
      const delivered = yield* run(
        EventoClient.streamGet("account-a1").pipe(
          Effect.filterOrFail((messages) => messages.length > 0),
          Effect.retry(Schedule.spaced("100 millis")),
          Effect.timeout("20 seconds")
        )
      )
      assert.deepStrictEqual(delivered.map((message) => [message.id, message.type, message.data]), [
        [id, "Opened", { owner: "Ada" }]
      ])
      assert.isTrue(Option.isSome(yield* run(sentAt(id))))

      const key = { namespace, category: "account", consumerId: "kit-test" }
      yield* run(PositionStore.save(key, delivered[0]!.globalPosition))
      assert.deepStrictEqual(yield* run(PositionStore.load(key)), Option.some(delivered[0]!.globalPosition))
      yield* run(Idempotency.markProcessed(key, delivered[0]!))
      assert.isTrue(yield* run(Idempotency.isProcessed(key, id)))

      const led = yield* run(Singleton.run("kit-test", Effect.succeed("led"), { verifyInterval: "100 millis" }))
      assert.strictEqual(led, "led")
    }))

  it.scoped("EVENTODB_MIGRATE=false leaves the schema alone and EVENTODB_OUTBOX_SENDER=false sends nothing", () =>
    Effect.gen(function*() {
      const { provider } = yield* configFor({ EVENTODB_MIGRATE: "false", EVENTODB_OUTBOX_SENDER: "false" })
      const kit = yield* buildKit(provider)
      const run = <A, E>(effect: Effect.Effect<A, E, EventodbKit.Services>) => Effect.provide(effect, kit)
      assert.strictEqual(yield* run(Migrations.currentVersion), 0)

      yield* run(Migrations.up())
      const id = yield* run(Outbox.write("account-b1", { type: "Opened", data: {} }))
      // With a sender, a leader starts within 2 verify intervals (4 seconds) and its first pass sends at once.
      yield* Effect.sleep("6 seconds")
      assert.isTrue(Option.isNone(yield* run(sentAt(id))))
      assert.deepStrictEqual(yield* run(EventoClient.streamGet("account-b1")), [])
    }))

  it.scoped("EVENTODB_CLEANUP=true runs the cleanup worker, which prunes sent rows past their retention", () =>
    Effect.gen(function*() {
      const { provider } = yield* configFor({
        EVENTODB_CLEANUP: "true",
        EVENTODB_CLEANUP_SENT_RETENTION: "1 millis",
        EVENTODB_CLEANUP_INTERVAL: "200 millis"
      })
      const kit = yield* buildKit(provider)
      const run = <A, E>(effect: Effect.Effect<A, E, EventodbKit.Services>) => Effect.provide(effect, kit)

      const id = yield* run(Outbox.write("account-c1", { type: "Opened", data: {} }))
      const rowCount = Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM evento_outbox WHERE id = ${id}`
      ).pipe(
        Effect.map((rows) => rows[0]?.n)
      )
      // Sent by the sender, then removed by the cleanup: the message stays in EventoDB.
      yield* run(rowCount.pipe(
        Effect.filterOrFail((n) => n === 0),
        Effect.retry(Schedule.spaced("100 millis")),
        Effect.timeout("20 seconds")
      ))
      const stored = yield* run(EventoClient.streamGet("account-c1"))
      assert.deepStrictEqual(stored.map((message) => message.id), [id])
    }))

  it.scoped("a missing DATABASE_URL fails the layer with a ConfigError naming it", () =>
    Effect.gen(function*() {
      const target = yield* EventoTest.EventoTarget
      const { token } = yield* EventoTest.freshNamespace
      const provider = ConfigProvider.fromMap(
        new Map([["EVENTODB_URL", target.url], ["EVENTODB_TOKEN", Redacted.value(token)]])
      )
      const exit = yield* Effect.exit(buildKit(provider))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(String(exit.cause), "DATABASE_URL")
    }))

  it.scoped("a token that does not parse fails the layer with EventoAuthError", () =>
    Effect.gen(function*() {
      const { provider } = yield* configFor({ EVENTODB_TOKEN: "not-a-token" })
      const error = yield* Effect.flip(buildKit(provider))
      assert.strictEqual(error._tag, "EventoAuthError")
    }))
})
