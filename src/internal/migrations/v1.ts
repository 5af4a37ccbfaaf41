/**
 * Version 1: the Elixir eventodb_kit's tables, column for column. Every statement tolerates objects that already
 * exist, so the same step completes a database the Elixir kit created (see `runner.ts`, adoption).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"

/** @internal */
export const name = "initial"

const upStatements = [
  `CREATE TABLE IF NOT EXISTS evento_outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  namespace text NOT NULL,
  stream text NOT NULL,
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb,
  write_options jsonb,
  sent_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
)`,
  `CREATE INDEX IF NOT EXISTS evento_outbox_unsent_idx
ON evento_outbox (namespace, created_at)
WHERE sent_at IS NULL`,
  `CREATE INDEX IF NOT EXISTS evento_outbox_idempotency_key_idx
ON evento_outbox ((data->>'idempotency_key'))`,
  // The index names below are the ones Ecto derives, so an adopted Elixir database does not get them twice.
  `CREATE INDEX IF NOT EXISTS evento_outbox_sent_at_index
ON evento_outbox (sent_at)`,
  `CREATE TABLE IF NOT EXISTS evento_consumer_positions (
  namespace text NOT NULL,
  category text NOT NULL,
  consumer_id text NOT NULL,
  position bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, category, consumer_id)
)`,
  `CREATE INDEX IF NOT EXISTS evento_consumer_positions_updated_at_index
ON evento_consumer_positions (updated_at)`,
  `CREATE TABLE IF NOT EXISTS evento_processed_events (
  event_id uuid PRIMARY KEY,
  namespace text NOT NULL,
  event_type text,
  category text NOT NULL,
  consumer_id text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
)`,
  `CREATE INDEX IF NOT EXISTS evento_processed_events_namespace_processed_at_index
ON evento_processed_events (namespace, processed_at)`
]

const downStatements = [
  "DROP TABLE IF EXISTS evento_processed_events",
  "DROP TABLE IF EXISTS evento_consumer_positions",
  "DROP TABLE IF EXISTS evento_outbox"
]

/** @internal */
export const run = (statements: ReadonlyArray<string>): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.forEach(statements, (text) => sql.unsafe(text), { discard: true })
  )

/** @internal */
export const up: Effect.Effect<void, SqlError, SqlClient.SqlClient> = run(upStatements)

/** @internal */
export const down: Effect.Effect<void, SqlError, SqlClient.SqlClient> = run(downStatements)

/**
 * The columns of version 1 and their types as `format_type` prints them: what adoption checks and conforms.
 *
 * @internal
 */
export const columns: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  evento_outbox: {
    id: "uuid",
    namespace: "text",
    stream: "text",
    type: "text",
    data: "jsonb",
    metadata: "jsonb",
    write_options: "jsonb",
    sent_at: "timestamp with time zone",
    created_at: "timestamp with time zone"
  },
  evento_consumer_positions: {
    namespace: "text",
    category: "text",
    consumer_id: "text",
    position: "bigint",
    updated_at: "timestamp with time zone"
  },
  evento_processed_events: {
    event_id: "uuid",
    namespace: "text",
    event_type: "text",
    category: "text",
    consumer_id: "text",
    processed_at: "timestamp with time zone"
  }
}
