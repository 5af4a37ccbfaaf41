import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type { ConsumerKey, PositionStore } from "../PositionStore.js"

/** Re-exported by `PositionStore` (and used by `Idempotency`); defined here so this module needs no value from it. */
export class InvalidConsumerInput extends Schema.TaggedError<InvalidConsumerInput>()("InvalidConsumerInput", {
  reason: Schema.Literal(
    "invalid-namespace",
    "invalid-category",
    "invalid-consumer-id",
    "invalid-position",
    "invalid-event-id"
  ),
  message: Schema.String
}) {}

const invalid = (reason: InvalidConsumerInput["reason"], message: string) =>
  Effect.fail(new InvalidConsumerInput({ reason, message }))

const nonEmpty = (value: unknown) => typeof value === "string" && value.length > 0 && !value.includes("\u0000")

/**
 * Checks a consumer key before any statement: an empty field would name a consumer nobody runs, and a key that is
 * not even an object would otherwise surface as a driver error.
 */
export const checkKey = (key: ConsumerKey): Effect.Effect<void, InvalidConsumerInput> => {
  const fields: unknown = key
  if (typeof fields !== "object" || fields === null) return invalid("invalid-namespace", "key must be an object")
  if (!nonEmpty(key.namespace)) return invalid("invalid-namespace", "namespace must be a non-empty string")
  if (!nonEmpty(key.category)) return invalid("invalid-category", "category must be a non-empty string")
  if (!nonEmpty(key.consumerId)) return invalid("invalid-consumer-id", "consumerId must be a non-empty string")
  return Effect.void
}

/** A global position is a non-negative safe integer: anything else is no message's position. */
export const checkPosition = (position: unknown, name = "position"): Effect.Effect<void, InvalidConsumerInput> =>
  typeof position === "number" && Number.isSafeInteger(position) && position >= 0
    ? Effect.void
    : invalid("invalid-position", `${name} must be a non-negative safe integer, got ${String(position)}`)

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Event ids are UUIDs (the column is `uuid`); anything else would be a driver error. */
export const checkEventId = (eventId: unknown): Effect.Effect<void, InvalidConsumerInput> =>
  typeof eventId === "string" && uuidPattern.test(eventId)
    ? Effect.void
    : invalid("invalid-event-id", "event id must be a UUID (8-4-4-4-12 hex digits)")

/** Wraps the service so every method checks its input first, in the SQL and memory layers alike. */
const checked = (store: PositionStore.Service): PositionStore.Service => ({
  // Suspended: building the store's effect already reads the key, which must be checked first.
  load: (key) => Effect.zipRight(checkKey(key), Effect.suspend(() => store.load(key))),
  save: (key, position) =>
    checkKey(key).pipe(
      Effect.zipRight(checkPosition(position)),
      Effect.zipRight(Effect.suspend(() => store.save(key, position)))
    ),
  reset: (key, position) =>
    checkKey(key).pipe(
      Effect.zipRight(checkPosition(position)),
      Effect.zipRight(Effect.suspend(() => store.reset(key, position)))
    )
})

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

  const store = checked({ load, save, reset })
  return {
    load: Effect.fn("PositionStore.load")(store.load),
    save: Effect.fn("PositionStore.save")(store.save),
    reset: Effect.fn("PositionStore.reset")(store.reset)
  }
})

/** The identity of a consumer as one string, for in-memory maps. */
export const keyString = (key: ConsumerKey): string => JSON.stringify([key.namespace, key.category, key.consumerId])

/** The in-memory store: the same rules, held in a `Ref` for the layer's lifetime. */
export const makeMemory: Effect.Effect<PositionStore.Service> = Effect.gen(function*() {
  const positions = yield* Ref.make(HashMap.empty<string, number>())

  return checked({
    load: (key) => Effect.map(Ref.get(positions), HashMap.get(keyString(key))),
    save: (key, position) =>
      Ref.update(positions, (map) =>
        HashMap.modifyAt(map, keyString(key), (saved) =>
          Option.some(Option.match(saved, {
            onNone: () => position,
            onSome: (current) => Math.max(current, position)
          })))),
    reset: (key, position) => Ref.update(positions, HashMap.set(keyString(key), position))
  })
})

/**
 * For callers whose keys and positions are checked already (the consumer validates its options, and positions
 * come from decoded messages): a refusal there is a bug, so it becomes a defect and the error channel stays
 * `SqlError`.
 */
export const assumeValidInput = (store: PositionStore.Service): {
  readonly [K in keyof PositionStore.Service]: (
    ...args: Parameters<PositionStore.Service[K]>
  ) => Effect.Effect<Effect.Effect.Success<ReturnType<PositionStore.Service[K]>>, SqlError>
} => ({
  load: (key) => dieOnInput(store.load(key)),
  save: (key, position) => dieOnInput(store.save(key, position)),
  reset: (key, position) => dieOnInput(store.reset(key, position))
})

/** Turns `InvalidConsumerInput` into a defect. */
export const dieOnInput = <A, E, R>(
  effect: Effect.Effect<A, E | InvalidConsumerInput, R>
): Effect.Effect<A, Exclude<E, InvalidConsumerInput>, R> =>
  Effect.catchIf(
    effect,
    (error): error is InvalidConsumerInput => error instanceof InvalidConsumerInput,
    Effect.die
  ) as Effect.Effect<A, Exclude<E, InvalidConsumerInput>, R>
