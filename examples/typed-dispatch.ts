/**
 * Typed dispatch: one `Schema` per message type decodes `data` before its handler runs, so handlers receive typed
 * values. A message whose data does not decode fails its handler like any other error: it is retried, then (with
 * `onFailure: "park"`) parked in `evento_parked_messages` for an operator while the consumer goes on. Types with no
 * entry are skipped (`unknown: "skip"`, counted by a metric) or fail (`unknown: "fail"`).
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
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { Consumer, EventoClient, Idempotency, Migrations, PositionStore, Singleton } from "../src/index.js"

const ItemAdded = Schema.Struct({ sku: Schema.String, quantity: Schema.Int.pipe(Schema.positive()) })
const ItemRemoved = Schema.Struct({ sku: Schema.String })

const program = Effect.gen(function*() {
  const client = yield* EventoClient.EventoClient
  const sql = yield* SqlClient.SqlClient
  const cart = yield* Ref.make(new Map<string, number>())

  const handler = Consumer.dispatch({
    handlers: {
      // `data` is typed from the schema: { sku: string; quantity: number }
      ItemAdded: Consumer.on(
        ItemAdded,
        (data) => Ref.update(cart, (items) => new Map(items).set(data.sku, (items.get(data.sku) ?? 0) + data.quantity))
      ),
      ItemRemoved: Consumer.on(ItemRemoved, (data) =>
        Ref.update(cart, (items) => {
          const next = new Map(items)
          next.delete(data.sku)
          return next
        }))
    },
    unknown: "skip"
  })
  yield* Layer.build(Consumer.layer({
    category: "cart",
    consumerId: "cart-view",
    handler,
    retry: { attempts: 2, delay: "10 millis" },
    onFailure: "park"
  }))

  yield* client.streamWrite("cart-7", { type: "ItemAdded", data: { sku: "tea", quantity: 2 } })
  yield* client.streamWrite("cart-7", { type: "CartViewed", data: {} }) // no entry: skipped
  yield* client.streamWrite("cart-7", { type: "ItemAdded", data: { sku: "cups", quantity: "two" } }) // parked
  yield* client.streamWrite("cart-7", { type: "ItemAdded", data: { sku: "milk", quantity: 1 } })
  yield* client.streamWrite("cart-7", { type: "ItemRemoved", data: { sku: "milk" } })

  // Caught up once the consumer's saved position is the last message's global position.
  const last = yield* Effect.flatten(client.streamLast("cart-7"))
  yield* PositionStore.load({ namespace: client.namespace, category: "cart", consumerId: "cart-view" }).pipe(
    Effect.filterOrFail(Option.contains(last.globalPosition)),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeout("30 seconds")
  )
  const items = yield* Ref.get(cart)
  yield* Console.log(
    `cart-7 after ${last.position + 1} messages: ${
      [...items].map(([sku, quantity]) => `${sku} x${quantity}`).join(", ")
    }`
  )

  const parked = yield* sql<{ readonly stream: string; readonly type: string; readonly attempts: number }>`
    SELECT stream, type, attempts FROM evento_parked_messages WHERE consumer_id = 'cart-view'
  `
  yield* Console.log(
    `parked: ${parked.map((row) => `${row.stream} ${row.type} after ${row.attempts} attempts`).join(", ")}`
  )
})

const PgLive = PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") })
const EventoLive = EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
const Database = Layer.effectDiscard(Migrations.up()).pipe(Layer.provideMerge(PgLive))
const AppLive = Layer.mergeAll(PositionStore.layer, Idempotency.layer, Singleton.layer).pipe(
  Layer.provideMerge(Layer.merge(Database, EventoLive))
)

program.pipe(Effect.scoped, Effect.provide(AppLive), NodeRuntime.runMain)
