import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type { ConsumerKey, PositionStore } from "../PositionStore.js"

const Position = Schema.Array(Schema.Struct({ position: Schema.NumberFromString }))

/** The SQL store, on `evento_consumer_positions`. Statements join the calling fiber's transaction. */
export const make: Effect.Effect<PositionStore.Service, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()

  const load = (key: ConsumerKey) =>
    sql`
      SELECT position::text AS position
      FROM evento_consumer_positions
      WHERE namespace = ${key.namespace}
        AND category = ${key.category}
        AND consumer_id = ${key.consumerId}
    `.pipe(
      Effect.flatMap((rows) => Effect.orDie(Schema.decodeUnknown(Position)(rows))),
      Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.position))
    )

  // GREATEST keeps a late or replayed save from moving the position backwards.
  const save = (key: ConsumerKey, position: number) =>
    sql`
      INSERT INTO evento_consumer_positions (namespace, category, consumer_id, position, updated_at)
      VALUES (${key.namespace}, ${key.category}, ${key.consumerId}, ${position}, now())
      ON CONFLICT (namespace, category, consumer_id)
      DO UPDATE SET position = GREATEST(evento_consumer_positions.position, EXCLUDED.position), updated_at = now()
    `.pipe(Effect.asVoid)

  const reset = (key: ConsumerKey, position: number) =>
    sql`
      INSERT INTO evento_consumer_positions (namespace, category, consumer_id, position, updated_at)
      VALUES (${key.namespace}, ${key.category}, ${key.consumerId}, ${position}, now())
      ON CONFLICT (namespace, category, consumer_id)
      DO UPDATE SET position = EXCLUDED.position, updated_at = now()
    `.pipe(Effect.asVoid)

  return {
    load: Effect.fn("PositionStore.load")(load),
    save: Effect.fn("PositionStore.save")(save),
    reset: Effect.fn("PositionStore.reset")(reset)
  }
})

/** The identity of a consumer as one string, for in-memory maps. */
export const keyString = (key: ConsumerKey): string => JSON.stringify([key.namespace, key.category, key.consumerId])

/** The in-memory store: the same rules, held in a `Ref` for the layer's lifetime. */
export const makeMemory: Effect.Effect<PositionStore.Service> = Effect.gen(function*() {
  const positions = yield* Ref.make(HashMap.empty<string, number>())

  return {
    load: (key) => Effect.map(Ref.get(positions), HashMap.get(keyString(key))),
    save: (key, position) =>
      Ref.update(positions, (map) =>
        HashMap.modifyAt(map, keyString(key), (saved) =>
          Option.some(Option.match(saved, {
            onNone: () => position,
            onSome: (current) => Math.max(current, position)
          })))),
    reset: (key, position) => Ref.update(positions, HashMap.set(keyString(key), position))
  }
})
