/**
 * The transactional outbox: a business row and its event commit together, or neither does.
 *
 * `Outbox.write` stores the event in the application's PostgreSQL inside the caller's `sql.withTransaction`; it never
 * talks to EventoDB, so it never fails because EventoDB is down. The sender (examples/sender.ts) ships it later.
 *
 * Needs `DATABASE_URL`, and `EVENTODB_TOKEN` (the outbox rows are written for the token's namespace).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { EventoClient, Migrations, Outbox } from "../src/index.js"

/** Opens an account: the row and the `AccountOpened` event in one transaction. */
const openAccount = (id: string, owner: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO accounts (id, owner) VALUES (${id}, ${owner})`
      // expectedVersion -1: EventoDB will accept it only as the stream's first message.
      return yield* Outbox.write(`account-${id}`, { type: "AccountOpened", data: { owner } }, { expectedVersion: -1 })
    }))
  })

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Migrations.up()
  yield* sql`CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY, owner text NOT NULL)`

  const id = yield* openAccount("a-1", "Ada")
  yield* Console.log(`opened a-1, outbox id ${id}`)

  // The second insert of a-1 fails, so its event is rolled back with it: no event without its row.
  const again = yield* openAccount("a-1", "Mallory").pipe(
    Effect.as("committed"),
    Effect.catchTag("SqlError", () => Effect.succeed("rolled back"))
  )
  yield* Console.log(`opening a-1 again: ${again}`)

  // An idempotency key makes a write happen once per namespace, however often the request is retried.
  const first = yield* Outbox.write("account-a-1", { type: "EmailVerified", data: {} }, {
    idempotencyKey: "verify-a-1"
  })
  const retried = yield* Outbox.write("account-a-1", { type: "EmailVerified", data: {} }, {
    idempotencyKey: "verify-a-1"
  })
  yield* Console.log(`idempotent retry returns the first id: ${first === retried}`)

  const rows = yield* sql<{ readonly stream: string; readonly type: string }>`
    SELECT stream, type FROM evento_outbox WHERE stream = 'account-a-1' ORDER BY seq
  `
  yield* Console.log(`outbox: ${rows.map((row) => `${row.stream} ${row.type}`).join(", ")}`)
})

const PgLive = PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") })
const EventoLive = EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
const OutboxLive = Outbox.layer().pipe(Layer.provideMerge(Layer.merge(PgLive, EventoLive)))

program.pipe(Effect.provide(OutboxLive), NodeRuntime.runMain)
