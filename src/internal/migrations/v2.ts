/**
 * Version 2: what version 1 gets wrong (LESSONS.md 3, 7, 10, 15), keeping every row.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { run } from "./v1.js"

/** @internal */
export const name = "ordering_idempotency_parking"

const outboxUp = [
  // Built by hand rather than as `bigserial` so existing rows are numbered in (created_at, id) order, not in
  // whatever order the heap happens to hold them. The result is what `bigserial` would have created.
  "CREATE SEQUENCE evento_outbox_seq_seq",
  "ALTER TABLE evento_outbox ADD COLUMN seq bigint",
  `UPDATE evento_outbox AS o
SET seq = numbered.n
FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM evento_outbox) AS numbered
WHERE o.id = numbered.id`,
  "SELECT setval('evento_outbox_seq_seq', COALESCE((SELECT max(seq) FROM evento_outbox), 0) + 1, false)",
  `ALTER TABLE evento_outbox
  ALTER COLUMN seq SET DEFAULT nextval('evento_outbox_seq_seq'),
  ALTER COLUMN seq SET NOT NULL`,
  "ALTER SEQUENCE evento_outbox_seq_seq OWNED BY evento_outbox.seq",
  "ALTER TABLE evento_outbox ADD CONSTRAINT evento_outbox_seq_key UNIQUE (seq)",
  `ALTER TABLE evento_outbox
  ADD COLUMN idempotency_key text,
  ADD COLUMN attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN last_error text,
  ADD COLUMN next_attempt_at timestamptz,
  ADD COLUMN parked_at timestamptz`,
  // Version 1 never enforced the key, so it may hold duplicates: the earliest row of a namespace keeps the key,
  // later ones get NULL (their data is left as it was).
  `UPDATE evento_outbox AS o
SET idempotency_key = firsts.key
FROM (
  SELECT DISTINCT ON (namespace, data->>'idempotency_key') id, data->>'idempotency_key' AS key
  FROM evento_outbox
  WHERE data->>'idempotency_key' IS NOT NULL
  ORDER BY namespace, data->>'idempotency_key', seq
) AS firsts
WHERE o.id = firsts.id`,
  `CREATE UNIQUE INDEX evento_outbox_namespace_idempotency_key_idx
ON evento_outbox (namespace, idempotency_key)`,
  `CREATE INDEX evento_outbox_sendable_idx
ON evento_outbox (namespace, seq)
WHERE sent_at IS NULL AND parked_at IS NULL`
]

const processedUp = [
  "ALTER TABLE evento_processed_events ADD PRIMARY KEY (namespace, category, consumer_id, event_id)",
  "ALTER TABLE evento_processed_events ADD COLUMN global_position bigint"
]

const parkedUp = [
  `CREATE TABLE evento_parked_messages (
  namespace text NOT NULL,
  category text NOT NULL,
  consumer_id text NOT NULL,
  event_id uuid NOT NULL,
  stream text NOT NULL,
  type text NOT NULL,
  global_position bigint NOT NULL,
  position bigint NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb,
  error text NOT NULL,
  attempts integer NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, category, consumer_id, event_id)
)`
]

const ConstraintName = Schema.Struct({ name: Schema.String })

/** Drops the primary key of `evento_processed_events` under whatever name it has (an adopted table may differ). */
const dropProcessedPrimaryKey = Effect.gen(function*() {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()
  const rows = yield* sql`
    SELECT conname AS name
    FROM pg_constraint
    WHERE conrelid = 'evento_processed_events'::regclass
      AND contype = 'p'
  `
  const keys = yield* Schema.decodeUnknown(Schema.Array(ConstraintName))(rows).pipe(Effect.orDie)
  yield* Effect.forEach(keys, ({ name }) => sql`ALTER TABLE evento_processed_events DROP CONSTRAINT ${sql(name)}`, {
    discard: true
  })
})

/** @internal */
export const up: Effect.Effect<void, SqlError, SqlClient.SqlClient> = Effect.all([
  run(outboxUp),
  dropProcessedPrimaryKey,
  run(processedUp),
  run(parkedUp)
], { discard: true })

const Count = Schema.Struct({ count: Schema.NumberFromString })

/**
 * How many events version 1's primary key (event_id alone) could not hold: marks of one event by several consumers.
 *
 * @internal
 */
export const marksSharingAnEvent: Effect.Effect<number, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()
  const rows = yield* sql`
    SELECT count(*)::text AS count
    FROM (SELECT event_id FROM evento_processed_events GROUP BY event_id HAVING count(*) > 1) AS shared
  `
  const [row] = yield* Schema.decodeUnknown(Schema.Tuple(Count))(rows).pipe(Effect.orDie)
  return row.count
})

const downStatements = [
  "DROP TABLE IF EXISTS evento_parked_messages",
  "ALTER TABLE evento_processed_events DROP COLUMN global_position",
  "ALTER TABLE evento_processed_events DROP CONSTRAINT evento_processed_events_pkey",
  "ALTER TABLE evento_processed_events ADD PRIMARY KEY (event_id)",
  // Dropping the columns drops their indexes, the unique constraint and the owned sequence with them.
  `ALTER TABLE evento_outbox
  DROP COLUMN parked_at,
  DROP COLUMN next_attempt_at,
  DROP COLUMN last_error,
  DROP COLUMN attempts,
  DROP COLUMN idempotency_key,
  DROP COLUMN seq`
]

/** @internal */
export const down: Effect.Effect<void, SqlError, SqlClient.SqlClient> = run(downStatements)
