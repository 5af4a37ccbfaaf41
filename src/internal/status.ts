/**
 * Read-only queries behind the CLI's `status` and `consumer reset`: which namespaces and consumers the database
 * knows, the newest global position of a category in EventoDB, and whether a singleton's lock is held.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { EventoClient } from "../EventoClient.js"
import type { EventoError } from "../EventoError.js"
import type { ConsumerKey } from "../PositionStore.js"

const decode = <A, I>(schema: Schema.Schema<A, I>, what: string) => (rows: unknown) =>
  Schema.decodeUnknown(schema)(rows).pipe(
    Effect.mapError((cause) => new SqlError({ cause, message: `${what} did not decode` }))
  )

const Names = Schema.Array(Schema.Struct({ namespace: Schema.String }))

/**
 * The namespaces with something to report: unsent outbox rows, a consumer position or parked consumer messages.
 * Sent rows are left out on purpose: finding them would scan the whole outbox.
 */
export const namespaces: Effect.Effect<ReadonlyArray<string>, SqlError, SqlClient> = Effect.gen(function*() {
  const sql = (yield* SqlClient).withoutTransforms()
  const rows = yield* sql`
    SELECT namespace FROM evento_outbox WHERE sent_at IS NULL
    UNION
    SELECT namespace FROM evento_consumer_positions
    UNION
    SELECT namespace FROM evento_parked_messages
    ORDER BY namespace
  `.pipe(Effect.flatMap(decode(Names, "namespaces")))
  return rows.map((row) => row.namespace)
})

/** A consumer the database knows: by its saved position, its parked messages, or both. */
export interface ConsumerRow {
  readonly namespace: string
  readonly category: string
  readonly consumerId: string
  /** None: parked messages but no saved position. */
  readonly position: Option.Option<number>
  readonly updatedAt: Option.Option<Date>
  readonly parkedMessages: number
}

const ConsumerSqlRow = Schema.Struct({
  namespace: Schema.String,
  category: Schema.String,
  consumer_id: Schema.String,
  position: Schema.NullOr(Schema.NumberFromString),
  updated_at: Schema.NullOr(Schema.DateFromSelf),
  parked: Schema.Number
})

export const consumers = (
  namespace: Option.Option<string>
): Effect.Effect<ReadonlyArray<ConsumerRow>, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      WITH parked AS (
        SELECT namespace, category, consumer_id, count(*)::int AS parked
        FROM evento_parked_messages
        GROUP BY namespace, category, consumer_id
      )
      SELECT namespace, category, consumer_id, p.position::text AS position, p.updated_at,
             coalesce(m.parked, 0) AS parked
      FROM evento_consumer_positions AS p
      FULL JOIN parked AS m USING (namespace, category, consumer_id)
      ${Option.match(namespace, { onNone: () => sql``, onSome: (name) => sql`WHERE namespace = ${name}` })}
      ORDER BY namespace, category, consumer_id
    `.pipe(Effect.flatMap(decode(Schema.Array(ConsumerSqlRow), "consumers")))
    return rows.map((row): ConsumerRow => ({
      namespace: row.namespace,
      category: row.category,
      consumerId: row.consumer_id,
      position: Option.fromNullable(row.position),
      updatedAt: Option.fromNullable(row.updated_at),
      parkedMessages: row.parked
    }))
  })

/**
 * The newest global position in `category` at or after `from`, or none when there is none. EventoDB has no call
 * for a category's head, so this searches with one-message reads: doubling steps from `from`, then halving the
 * last gap, about 2·log2(lag) calls. Global positions have gaps, so each read jumps to the message it found.
 */
export const categoryHead = (
  client: EventoClient.Service,
  category: string,
  from: number
): Effect.Effect<Option.Option<number>, EventoError> =>
  Effect.gen(function*() {
    const probe = (position: number) =>
      Effect.map(
        client.categoryGet(category, { position, batchSize: 1 }),
        (messages) => Option.map(Option.fromNullable(messages[0]), (message) => message.globalPosition)
      )

    const first = yield* probe(Math.max(1, from))
    if (Option.isNone(first)) return Option.none()
    // `found` always holds an existing position; nothing exists at or after `beyond`, once it is known.
    let found = first.value
    let step = 1
    let beyond: number | undefined
    while (beyond === undefined) {
      const next = yield* probe(found + step)
      if (Option.isNone(next)) beyond = found + step
      else {
        found = next.value
        step *= 2
      }
    }
    while (found + 1 < beyond) {
      const middle = Math.floor((found + beyond) / 2)
      const next = yield* probe(middle)
      if (Option.isNone(next)) beyond = middle
      else found = next.value
    }
    return Option.some(found)
  })

const Held = Schema.Tuple(Schema.Struct({ held: Schema.Boolean }))

/**
 * Whether some session holds the advisory lock `Singleton` takes for `name` in this database. The key is the
 * first 8 bytes of md5(name) as a signed 64-bit integer; `pg_locks` shows a 64-bit key as two 32-bit halves.
 */
export const singletonHeld = (name: string): Effect.Effect<boolean, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      WITH k AS (SELECT ('x' || left(md5(${name}), 16))::bit(64)::bigint AS key)
      SELECT EXISTS (
        SELECT 1
        FROM pg_locks AS l, k
        WHERE l.locktype = 'advisory'
          AND l.granted
          AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::text::bigint = (k.key >> 32) & 4294967295
          AND l.objid::text::bigint = k.key & 4294967295
      ) AS held
    `.pipe(Effect.flatMap(decode(Held, "lock state")))
    return rows[0].held
  })

const Count = Schema.Tuple(Schema.Struct({ count: Schema.Number }))

/** How many of the consumer's marks record a global position above `position`. */
export const marksAbove = (key: ConsumerKey, position: number): Effect.Effect<number, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      SELECT count(*)::int AS count
      FROM evento_processed_events
      WHERE namespace = ${key.namespace}
        AND category = ${key.category}
        AND consumer_id = ${key.consumerId}
        AND global_position > ${position}
    `.pipe(Effect.flatMap(decode(Count, "mark count")))
    return rows[0].count
  })

/**
 * Removes the consumer's marks above `position`, so that a replay from there handles those messages again. Joins
 * the caller's transaction.
 */
export const clearMarksAbove = (key: ConsumerKey, position: number): Effect.Effect<number, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      WITH removed AS (
        DELETE FROM evento_processed_events
        WHERE namespace = ${key.namespace}
          AND category = ${key.category}
          AND consumer_id = ${key.consumerId}
          AND global_position > ${position}
        RETURNING 1
      )
      SELECT count(*)::int AS count FROM removed
    `.pipe(Effect.flatMap(decode(Count, "mark count")))
    return rows[0].count
  })

const Ids = Schema.Array(Schema.Struct({ id: Schema.String }))

/**
 * The ids among `ids` of unsent rows in `namespace` (`parkedOnly`: parked ones only): the rows an operator action
 * scoped to that namespace may touch.
 */
export const outboxIdsIn = (
  namespace: string,
  ids: ReadonlyArray<string>,
  parkedOnly: boolean
): Effect.Effect<ReadonlyArray<string>, SqlError, SqlClient> =>
  Effect.gen(function*() {
    if (ids.length === 0) return []
    const sql = (yield* SqlClient).withoutTransforms()
    const rows = yield* sql`
      SELECT id::text AS id
      FROM evento_outbox
      WHERE namespace = ${namespace}
        AND id IN ${sql.in(ids)}
        AND sent_at IS NULL
        ${parkedOnly ? sql`AND parked_at IS NOT NULL` : sql``}
      ORDER BY seq
    `.pipe(Effect.flatMap(decode(Ids, "outbox ids")))
    return rows.map((row) => row.id)
  })
