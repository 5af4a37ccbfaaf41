/**
 * The outbox sender as a layer: it ships what `Outbox.write` stored, each row with its outbox id as the message id,
 * the rows of a stream in order, and keeps going through EventoDB outages.
 *
 * `OutboxSender.layer` runs under the `Singleton` name `outbox-sender:<namespace>`: start it in every process of
 * the application and exactly one sends at a time; another takes over when that one goes away.
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
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { EventoClient, Migrations, Outbox, OutboxSender, Singleton } from "../src/index.js"

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const client = yield* EventoClient.EventoClient

  const ids = yield* sql.withTransaction(Outbox.writeBatch([
    { stream: "order-1", message: { type: "OrderPlaced", data: { total: 42 } }, options: { expectedVersion: -1 } },
    { stream: "order-1", message: { type: "OrderPaid", data: { amount: 42 } }, options: { expectedVersion: 0 } },
    { stream: "order-2", message: { type: "OrderPlaced", data: { total: 7 } } }
  ]))
  yield* Console.log(`wrote ${ids.length} events to the outbox`)

  // The sender is woken by the write's notification; here we just wait until EventoDB has them.
  const order1 = yield* client.streamGet("order-1").pipe(
    Effect.filterOrFail((messages) => messages.length === 2),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeout("30 seconds")
  )
  yield* Console.log(`order-1 in EventoDB: ${order1.map((message) => message.type).join(", ")}`)
  yield* Console.log(`message ids are the outbox ids: ${order1.every((message, i) => message.id === ids[i])}`)

  const backlog = yield* OutboxSender.backlog(client.namespace).pipe(
    Effect.filterOrFail((backlog) => backlog.unsent === 0),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeout("30 seconds")
  )
  yield* Console.log(
    `backlog: ${backlog.unsent} unsent, ${backlog.parked} parked, oldest ${
      Option.match(backlog.oldestUnsentAt, { onNone: () => "none", onSome: (at) => at.toISOString() })
    }`
  )
})

const PgLive = PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") })
const EventoLive = EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
// The schema first: the sender starts reading the outbox as soon as it leads.
const Database = Layer.effectDiscard(Migrations.up()).pipe(Layer.provideMerge(PgLive))

const SenderLive = OutboxSender.layer({ pollInterval: "1 second" }).pipe(Layer.provide(Singleton.layer))

const AppLive = Layer.merge(SenderLive, Outbox.layer()).pipe(Layer.provideMerge(Layer.merge(Database, EventoLive)))

program.pipe(Effect.provide(AppLive), NodeRuntime.runMain)
