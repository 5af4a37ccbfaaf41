/**
 * The demo's business: partnership applications that become sales leads.
 *
 * - Write side: `demo_applications` holds each application. Every change to a row and the event that tells the
 *   world about it commit in one transaction, the event going through `Outbox.write` to stream
 *   `<category>-<application id>` with `expectedVersion`, so EventoDB refuses anything out of order.
 * - Read side: the `leads` consumer group projects the events into `demo_leads`. Each handler runs in the consumer's
 *   transaction (`transactional: true`), so its rows commit together with the processed mark and the position.
 *   Each delivery is also recorded in `demo_deliveries` (no unique key, so a second delivery would show), with
 *   whether it arrived in stream order and its latency from the outbox write.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as Statement from "@effect/sql/Statement"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Consumer, type EventoClient, Outbox } from "../../src/index.js"

/** Milliseconds since the epoch with sub-millisecond precision; producers and handlers share this process's clock. */
export const now = (): number => performance.timeOrigin + performance.now()

export const createTables = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.all([
    sql`
      CREATE TABLE IF NOT EXISTS demo_applications (
        id uuid PRIMARY KEY,
        run_id text NOT NULL,
        company text NOT NULL,
        contact_email text NOT NULL,
        status text NOT NULL,
        score integer,
        notes integer NOT NULL DEFAULT 0,
        version integer NOT NULL
      )
    `,
    sql`
      CREATE TABLE IF NOT EXISTS demo_leads (
        application_id uuid PRIMARY KEY,
        run_id text NOT NULL,
        company text NOT NULL,
        contact_email text NOT NULL,
        status text NOT NULL,
        score integer,
        notes integer NOT NULL DEFAULT 0,
        version integer NOT NULL
      )
    `,
    sql`
      CREATE TABLE IF NOT EXISTS demo_deliveries (
        run_id text NOT NULL,
        event_id uuid NOT NULL,
        stream text NOT NULL,
        n integer NOT NULL,
        member integer NOT NULL,
        in_order boolean NOT NULL,
        latency_ms double precision NOT NULL,
        handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )
    `,
    sql`CREATE INDEX IF NOT EXISTS demo_deliveries_run_idx ON demo_deliveries (run_id)`
  ], { discard: true }))

// --- events ---

/** Every event carries its place in the stream (`n`) and when its outbox write began (`writtenAt`). */
const Stamp = { n: Schema.Int, writtenAt: Schema.Number }

export const ApplicationSubmitted = Schema.Struct({
  ...Stamp,
  applicationId: Schema.UUID,
  company: Schema.String,
  contactEmail: Schema.String
})

export const ApplicationScored = Schema.Struct({ ...Stamp, score: Schema.Int })

export const NoteAdded = Schema.Struct({ ...Stamp, note: Schema.String })

/** Written before the run to learn that the sender and every group member are up. Not part of the business. */
export const ReadinessProbe = Schema.Struct({ member: Schema.optional(Schema.Int) })

const statusFor = (score: number) => (score >= 60 ? "qualified" : "nurturing")

// --- write side ---

/** The `n`-th change of an application: its row and its event, in one transaction. */
export const change = (runId: string, category: string, applicationId: string, n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const stream = `${category}-${applicationId}`
    const writtenAt = now()
    const options = { expectedVersion: n - 1 }

    yield* sql.withTransaction(Effect.gen(function*() {
      if (n === 0) {
        const company = `Company ${applicationId.slice(0, 8)}`
        const contactEmail = `partners@${applicationId.slice(0, 8)}.example`
        yield* sql`
          INSERT INTO demo_applications (id, run_id, company, contact_email, status, version)
          VALUES (${applicationId}, ${runId}, ${company}, ${contactEmail}, 'new', 0)
        `
        const data = { n, writtenAt, applicationId, company, contactEmail }
        return yield* Outbox.write(stream, { type: "ApplicationSubmitted", data }, options)
      }
      if (n % 2 === 1) {
        const score = (n * 37 + applicationId.charCodeAt(0)) % 100
        yield* sql`
          UPDATE demo_applications SET score = ${score}, status = ${statusFor(score)}, version = ${n}
          WHERE id = ${applicationId}
        `
        return yield* Outbox.write(stream, { type: "ApplicationScored", data: { n, writtenAt, score } }, options)
      }
      yield* sql`UPDATE demo_applications SET notes = notes + 1, version = ${n} WHERE id = ${applicationId}`
      const note = `follow-up call ${n / 2}`
      return yield* Outbox.write(stream, { type: "NoteAdded", data: { n, writtenAt, note } }, options)
    }))
  })

/** A probe through the outbox, on a stream of its own. */
export const probe = (category: string, k: number) =>
  Outbox.write(`${category}-probe${k}`, { type: "ReadinessProbe", data: {} })

// --- read side ---

/**
 * The handler of group member `member`. Each projection statement only applies when the lead is at the version
 * just before the event's, so a message out of order (or a second delivery) changes nothing and is recorded as
 * out of order.
 */
export const handlerFor = (runId: string, member: number, ready: Deferred.Deferred<void>) => {
  /** Runs the projection statement and records the delivery, in one round trip. */
  const project = (
    message: EventoClient.Message,
    stamp: { readonly n: number; readonly writtenAt: number },
    projection: (sql: SqlClient.SqlClient) => Statement.Statement<unknown>
  ) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql`
        WITH applied AS (${projection(sql)} RETURNING 1)
        INSERT INTO demo_deliveries (run_id, event_id, stream, n, member, in_order, latency_ms)
        SELECT ${runId}, ${message.id}, ${message.streamName}, ${stamp.n}, ${member}, EXISTS (SELECT 1 FROM applied),
          ${now() - stamp.writtenAt}
      `)

  return Consumer.dispatch({
    handlers: {
      ApplicationSubmitted: Consumer.on(ApplicationSubmitted, (data, message) =>
        project(message, data, (sql) =>
          sql`
            INSERT INTO demo_leads (application_id, run_id, company, contact_email, status, version)
            VALUES (${data.applicationId}, ${runId}, ${data.company}, ${data.contactEmail}, 'new', ${data.n})
            ON CONFLICT DO NOTHING
          `)),
      ApplicationScored: Consumer.on(ApplicationScored, (data, message) =>
        project(message, data, (sql) =>
          sql`
            UPDATE demo_leads SET score = ${data.score}, status = ${statusFor(data.score)}, version = ${data.n}
            WHERE application_id = ${applicationIdOf(message)} AND version = ${data.n - 1}
          `)),
      NoteAdded: Consumer.on(NoteAdded, (data, message) =>
        project(message, data, (sql) =>
          sql`
            UPDATE demo_leads SET notes = notes + 1, version = ${data.n}
            WHERE application_id = ${applicationIdOf(message)} AND version = ${data.n - 1}
          `)),
      ReadinessProbe: Consumer.on(ReadinessProbe, () => Deferred.succeed(ready, void 0))
    },
    // Every type this consumer meets is one it knows; anything else is a bug worth stopping for.
    unknown: "fail"
  })
}

/** The application id is the stream's id: everything after the category's dash. */
const applicationIdOf = (message: EventoClient.Message): string =>
  message.streamName.slice(message.streamName.indexOf("-") + 1)
