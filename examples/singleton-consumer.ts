/**
 * A consumer that keeps a read model in PostgreSQL, run as a singleton.
 *
 * `Consumer.layer` runs under the `Singleton` name `consumer:<namespace>:<category>:<consumerId>`: deploy it in
 * every process and one runs it at a time. It reads the category from its saved position + 1; with
 * `transactional: true` each message's handler SQL, its processed mark and the new position commit in one
 * transaction, so the read model sees every message exactly once, across crashes and restarts.
 *
 * Needs `DATABASE_URL`, `EVENTODB_URL` and `EVENTODB_TOKEN`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { Consumer, EventoClient, Idempotency, Migrations, PositionStore, Singleton } from "../src/index.js"

const Balances = Consumer.layer({
  category: "account",
  consumerId: "balances",
  transactional: true,
  handler: (message) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const amount = Number(message.data.amount ?? 0) * (message.type === "Withdrawn" ? -1 : 1)
      yield* sql`
        INSERT INTO balances (account, balance) VALUES (${message.streamName}, ${amount})
        ON CONFLICT (account) DO UPDATE SET balance = balances.balance + EXCLUDED.balance
      `
    })
})

const program = Effect.gen(function*() {
  const client = yield* EventoClient.EventoClient
  const sql = yield* SqlClient.SqlClient

  yield* client.streamWrite("account-1", { type: "Deposited", data: { amount: 100 } })
  yield* client.streamWrite("account-1", { type: "Withdrawn", data: { amount: 30 } })
  yield* client.streamWrite("account-2", { type: "Deposited", data: { amount: 5 } })

  // The consumer starts once it leads (a few seconds: a new leader waits out any old one), then catches up.
  const balances = yield* sql<{ readonly account: string; readonly balance: number }>`
    SELECT account, balance FROM balances ORDER BY account
  `.pipe(
    Effect.filterOrFail((rows) => rows.length === 2 && rows[0]?.balance === 70),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeout("30 seconds")
  )
  yield* Console.log(`balances: ${balances.map((row) => `${row.account} ${row.balance}`).join(", ")}`)
})

const PgLive = PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") })
const EventoLive = EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
const Database = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Migrations.up()
  yield* sql`CREATE TABLE IF NOT EXISTS balances (account text PRIMARY KEY, balance integer NOT NULL)`
})).pipe(Layer.provideMerge(PgLive))

const AppLive = Balances.pipe(
  Layer.provide(Layer.mergeAll(PositionStore.layer, Idempotency.layer, Singleton.layer)),
  Layer.provideMerge(Layer.merge(Database, EventoLive))
)

program.pipe(Effect.provide(AppLive), NodeRuntime.runMain)
