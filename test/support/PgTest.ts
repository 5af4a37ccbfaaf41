/**
 * A fresh PostgreSQL database per test file, as a scoped Layer, on the server the global setup started (or the one
 * `DATABASE_URL` names).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import pg from "pg"
import { inject } from "vitest"

/** The URL of the server the run uses (its maintenance database). */
export const serverUrl = (): string => inject("databaseUrl")

/** The URL of `database` on the run's server. */
export const databaseUrl = (database: string): string => {
  const url = new URL(serverUrl())
  url.pathname = `/${database}`
  return url.toString()
}

const admin = <A>(f: (client: pg.Client) => Promise<A>) =>
  Effect.promise(async () => {
    const client = new pg.Client({ connectionString: serverUrl() })
    await client.connect()
    try {
      return await f(client)
    } finally {
      await client.end()
    }
  })

/** Creates an empty database, dropped (with its connections) when the scope closes. Yields its URL. */
export const freshDatabase = Effect.acquireRelease(
  Effect.gen(function*() {
    const name = `kit_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
    yield* admin((client) => client.query(`CREATE DATABASE ${name}`))
    return { name, url: databaseUrl(name) }
  }),
  ({ name }) => admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
)

/** A `PgClient` (and `SqlClient`) on a fresh database. */
export const layer: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient> = Layer.unwrapScoped(
  Effect.map(freshDatabase, ({ url }) => PgClient.layer({ url: Redacted.make(url), maxConnections: 10 }))
).pipe(Layer.orDie)
