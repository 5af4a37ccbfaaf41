/**
 * The quick start: every service from configuration in one layer, a business write with its event, and a consumer
 * that reacts to it.
 *
 * `EventodbKit.layerConfig()` reads `EVENTODB_URL`, `EVENTODB_TOKEN` and `DATABASE_URL`, migrates the schema and
 * starts the outbox sender. `Consumer.layer` on top of it runs a consumer in the background.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { Consumer, EventodbKit, Outbox } from "../src/index.js"

const SignedUp = Schema.Struct({ email: Schema.String })

/** The business change and its event commit together, in the application's own transaction. */
const signUp = (id: string, email: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO users (id, email) VALUES (${id}, ${email})`
      yield* Outbox.write(`user-${id}`, { type: "SignedUp", data: { email } }, { expectedVersion: -1 })
    }))
  })

/** Reacts to sign-ups exactly once: its SQL commits with the consumer's mark and position. */
const Welcomer = Consumer.layer({
  category: "user",
  consumerId: "welcomer",
  transactional: true,
  handler: Consumer.dispatch({
    handlers: {
      SignedUp: Consumer.on(
        SignedUp,
        (data) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO welcomes (email) VALUES (${data.email})`)
      )
    }
  })
})

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS users (id text PRIMARY KEY, email text NOT NULL)`
  yield* sql`CREATE TABLE IF NOT EXISTS welcomes (email text NOT NULL)`

  yield* signUp("u1", "ada@example.com")

  const welcomed = yield* sql<{ readonly email: string }>`SELECT email FROM welcomes`.pipe(
    Effect.filterOrFail((rows) => rows.length > 0),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeout("30 seconds")
  )
  yield* Console.log(`welcomed: ${welcomed.map((row) => row.email).join(", ")}`)
})

const AppLive = Welcomer.pipe(Layer.provideMerge(EventodbKit.layerConfig()))

program.pipe(Effect.provide(AppLive), NodeRuntime.runMain)
