/**
 * The consumer's batch statements on the version 2 tables (the ones `PositionStore.layer` and `Idempotency.layer`
 * use). One round trip per batch for the marks check and one for the commit keep a consumer close to the speed of a
 * bare read; per-message statements would cost a round trip each.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Message } from "../EventoClient.js"
import type { ConsumerKey } from "../PositionStore.js"

/**
 * A message that exhausted its retries, with what made it fail.
 */
export interface Parked {
  readonly message: Message
  readonly error: string
  readonly attempts: number
}

const MarkRow = Schema.Struct({ event_id: Schema.String })
const decodeMarks = Schema.decodeUnknown(Schema.Array(MarkRow))

const BeyondRow = Schema.Struct({ max: Schema.NullOr(Schema.NumberFromString), unknown: Schema.Number })
const decodeBeyond = Schema.decodeUnknown(Schema.Array(BeyondRow))

export interface ConsumerSql {
  /**
   * The highest global position among this consumer's marks above `position`: -1 when there is none, `Infinity`
   * when a mark without a global position (written by version 1) could be anywhere.
   */
  readonly markedBeyond: (key: ConsumerKey, position: number) => Effect.Effect<number, SqlError>
  /** The ids among `ids` already marked as processed for this consumer, lower case. */
  readonly processedAmong: (
    key: ConsumerKey,
    ids: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlySet<string>, SqlError>
  /**
   * Parks `parked`, marks `messages` and moves the position to `position` (never backwards), atomically: one
   * statement, or one transaction when something is parked.
   */
  readonly commit: (
    key: ConsumerKey,
    messages: ReadonlyArray<Message>,
    parked: ReadonlyArray<Parked>,
    position: number
  ) => Effect.Effect<void, SqlError>
  /** Parks one message; joins the caller's transaction. */
  readonly park: (key: ConsumerKey, parked: Parked) => Effect.Effect<void, SqlError>
}

/**
 * `sql.withTransaction`, with a failed COMMIT or ROLLBACK (which it turns into a defect) as the `SqlError` it is, so
 * that callers can retry it like any other failed statement.
 */
export const inTransaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  sql.withTransaction(self).pipe(
    Effect.catchSomeDefect((defect) => defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none())
  )

const isUniqueViolation = (error: SqlError): boolean =>
  (error.cause as { readonly code?: unknown } | undefined)?.code === "23505"

/**
 * A PostgreSQL array literal of `values`, each quoted (backslash and double quote escaped), so that no value reads
 * as NULL or splits on a comma. Sent as a text parameter and cast to the element type in SQL.
 */
const arrayLiteral = (values: ReadonlyArray<string>): string =>
  `{${values.map((value) => `"${value.replace(/["\\]/g, "\\$&")}"`).join(",")}}`

export const make = (sql: SqlClient.SqlClient): ConsumerSql => {
  const processedAmong = (key: ConsumerKey, ids: ReadonlyArray<string>) =>
    ids.length === 0 ? Effect.succeed(new Set<string>()) : sql`
      SELECT event_id::text AS event_id
      FROM evento_processed_events
      WHERE namespace = ${key.namespace}
        AND category = ${key.category}
        AND consumer_id = ${key.consumerId}
        AND event_id IN ${sql.in(ids)}
    `.pipe(
      Effect.flatMap((rows) => Effect.orDie(decodeMarks(rows))),
      Effect.map((rows) => new Set(rows.map((row) => row.event_id.toLowerCase())))
    )

  const markedBeyond = (key: ConsumerKey, position: number) =>
    sql`
      SELECT max(global_position)::text AS max, count(*) FILTER (WHERE global_position IS NULL)::int AS unknown
      FROM evento_processed_events
      WHERE namespace = ${key.namespace}
        AND category = ${key.category}
        AND consumer_id = ${key.consumerId}
        AND (global_position IS NULL OR global_position > ${position})
    `.pipe(
      Effect.flatMap((rows) => Effect.orDie(decodeBeyond(rows))),
      Effect.map(([row]) => row === undefined ? -1 : row.unknown > 0 ? Infinity : row.max ?? -1)
    )

  const park = (key: ConsumerKey, { attempts, error, message }: Parked) => {
    const data = JSON.stringify(message.data)
    const metadata = Option.match(message.metadata, { onNone: () => null, onSome: (value) => JSON.stringify(value) })
    return sql`
      INSERT INTO evento_parked_messages
        (namespace, category, consumer_id, event_id, stream, type, global_position, position, data, metadata,
         error, attempts)
      VALUES (
        ${key.namespace}, ${key.category}, ${key.consumerId}, ${message.id}, ${message.streamName}, ${message.type},
        ${message.globalPosition}, ${message.position}, ${data}::jsonb, ${metadata}::jsonb, ${error}, ${attempts}
      )
      ON CONFLICT (namespace, category, consumer_id, event_id)
      DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, parked_at = now()
    `.pipe(Effect.asVoid)
  }

  // The marks ride in three array parameters (ids, types, global positions) unnested side by side: a batch of 10000
  // would exceed PostgreSQL's parameter limit as one row of parameters each, and arrays cost PostgreSQL less than the
  // JSON document this replaced (measured: consumer bench ratio 0.52 to 0.56 on average).
  // `tolerant` adds ON CONFLICT DO NOTHING, which costs a fifth of the statement; the consumer leaves out the
  // messages it found marked, so a conflict means a race with another writer of this consumer's marks.
  const marksAndPosition = (
    key: ConsumerKey,
    messages: ReadonlyArray<Message>,
    position: number,
    tolerant: boolean
  ) => {
    const ids = arrayLiteral(messages.map((message) => message.id))
    const types = arrayLiteral(messages.map((message) => message.type))
    const globals = arrayLiteral(messages.map((message) => String(message.globalPosition)))
    return sql`
      WITH marked AS (
        INSERT INTO evento_processed_events
          (event_id, namespace, event_type, category, consumer_id, global_position)
        SELECT m.event_id, ${key.namespace}, m.event_type, ${key.category}, ${key.consumerId}, m.global_position
        FROM unnest(${ids}::uuid[], ${types}::text[], ${globals}::bigint[]) AS m(event_id, event_type, global_position)
        ${sql.literal(tolerant ? "ON CONFLICT DO NOTHING" : "")}
      )
      INSERT INTO evento_consumer_positions (namespace, category, consumer_id, position, updated_at)
      VALUES (${key.namespace}, ${key.category}, ${key.consumerId}, ${position}, now())
      ON CONFLICT (namespace, category, consumer_id)
      DO UPDATE SET position = GREATEST(evento_consumer_positions.position, EXCLUDED.position), updated_at = now()
    `.pipe(Effect.asVoid)
  }

  const commit = (
    key: ConsumerKey,
    messages: ReadonlyArray<Message>,
    parked: ReadonlyArray<Parked>,
    position: number
  ) =>
    parked.length === 0
      // One statement commits atomically: a unique violation wrote nothing, and the tolerant form then skips the
      // marks that exist.
      ? marksAndPosition(key, messages, position, false).pipe(
        Effect.catchIf(isUniqueViolation, () => marksAndPosition(key, messages, position, true))
      )
      : inTransaction(
        sql,
        Effect.zipRight(
          Effect.forEach(parked, (entry) => park(key, entry), { discard: true }),
          marksAndPosition(key, messages, position, true)
        )
      )

  return { markedBeyond, processedAmong, commit, park }
}
