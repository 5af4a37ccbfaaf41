/**
 * Shared set-up for the benches.
 *
 * - PostgreSQL: a scratch database, created on the server `DATABASE_URL` names and dropped afterwards, or an
 *   embedded server (scripts/embedded-postgres.mjs in a child process, so its exit hooks stay out of ours). The
 *   schema is migrated to the latest version.
 * - EventoDB: `EVENTODB_URL` with `EVENTODB_ADMIN_TOKEN` (a fresh namespace, deleted afterwards) or with
 *   `EVENTODB_TOKEN` (that namespace as it is); without `EVENTODB_URL`, an in-process `EventoTestServer`.
 * - Output: logs go to stderr; `main` prints the bench's JSON object as the very last stdout line, after every
 *   scope (servers, pools, child processes) has closed.
 */
import { NodeHttpClient, NodeRuntime } from "@effect/platform-node"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createInterface } from "node:readline"
import pg from "pg"
import * as EventoClient from "../src/EventoClient.js"
import * as EventoTestServer from "../src/EventoTestServer.js"
import * as Migrations from "../src/Migrations.js"

/** A set-up step failed. */
export class BenchError
  extends Data.TaggedError("BenchError")<{ readonly message: string; readonly cause?: unknown }>
{}

const attempt = <A>(message: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new BenchError({ message, cause }) })

/** A suffix for scratch names: databases, namespaces, streams. */
export const runId = (): string => `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`

// --- PostgreSQL ---

const onServer = <A>(url: string, f: (client: pg.Client) => Promise<A>) =>
  attempt(`PostgreSQL at ${new URL(url).host}`, async () => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      return await f(client)
    } finally {
      await client.end()
    }
  })

/** Starts the embedded PostgreSQL in a child process; it stops when its stdin closes (our scope, or our death). */
const embeddedServer: Effect.Effect<string, BenchError, Scope.Scope> = Effect.acquireRelease(
  Effect.async<{ url: string; child: ReturnType<typeof spawn> }, BenchError>((resume) => {
    const child = spawn(process.execPath, ["scripts/embedded-postgres.mjs"], { stdio: ["pipe", "pipe", "inherit"] })
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith("ready ")) resume(Effect.succeed({ url: line.slice("ready ".length), child }))
    })
    child.once(
      "exit",
      (code) => resume(Effect.fail(new BenchError({ message: `embedded PostgreSQL exited (${code})` })))
    )
  }),
  ({ child }) =>
    Effect.async<void>((resume) => {
      if (child.exitCode !== null) return resume(Effect.void)
      child.once("exit", () => resume(Effect.void))
      child.stdin?.end()
    })
).pipe(
  Effect.map(({ url }) => url),
  Effect.tap(() => Effect.logInfo("embedded PostgreSQL started"))
)

/** A fresh database on the server, dropped (with its connections) when the scope closes; its URL. */
const scratchDatabase = (serverUrl: string): Effect.Effect<string, BenchError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const name = `bench_${runId()}`
      yield* onServer(serverUrl, (client) => client.query(`CREATE DATABASE ${name}`))
      const url = new URL(serverUrl)
      url.pathname = `/${name}`
      return { name, url: url.toString() }
    }),
    ({ name }) =>
      onServer(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).pipe(
        Effect.catchAll((error) => Effect.logWarning("could not drop the bench database", error))
      )
  ).pipe(Effect.map(({ url }) => url))

/** `PgClient` and `SqlClient` on a scratch database, migrated to the latest version. */
export const postgres = (options: { readonly maxConnections?: number } = {}): Layer.Layer<
  PgClient.PgClient | SqlClient.SqlClient,
  BenchError
> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const configured = yield* Config.option(Config.string("DATABASE_URL")).pipe(Effect.orDie)
    const server = Option.isSome(configured) ? configured.value : yield* embeddedServer
    const url = yield* scratchDatabase(server)
    return Layer.effectDiscard(Migrations.up().pipe(Effect.orDie)).pipe(
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), maxConnections: options.maxConnections ?? 10 }))
    )
  })).pipe(Layer.mapError((error) => error instanceof BenchError ? error : new BenchError({ message: String(error) })))

// --- EventoDB ---

/** Where the bench's EventoDB namespace lives. */
export interface EventoTarget {
  readonly url: string
  readonly token: Redacted.Redacted<string>
  readonly namespace: string
  readonly description: string
}

/**
 * A namespace to write to: a fresh one (deleted afterwards) when an admin token is known, else `EVENTODB_TOKEN`'s.
 */
export const eventoTarget: Effect.Effect<EventoTarget, BenchError, Scope.Scope | HttpClient.HttpClient> = Effect
  .gen(function*() {
    const url = yield* Config.option(Config.string("EVENTODB_URL")).pipe(Effect.orDie)
    const adminToken = yield* Config.option(Config.redacted("EVENTODB_ADMIN_TOKEN")).pipe(Effect.orDie)
    const token = yield* Config.option(Config.redacted("EVENTODB_TOKEN")).pipe(Effect.orDie)

    if (Option.isSome(url) && Option.isNone(adminToken) && Option.isSome(token)) {
      const client = yield* EventoClient.make({ url: url.value, token: token.value })
      return { url: url.value, token: token.value, namespace: client.namespace, description: url.value }
    }
    const server = Option.isSome(url) && Option.isSome(adminToken)
      ? { url: url.value, adminToken: adminToken.value, description: url.value }
      : yield* EventoTestServer.make({}).pipe(
        Effect.map((s) => ({ url: s.url, adminToken: s.adminToken, description: "in-process EventoTestServer" }))
      )
    const admin = yield* EventoClient.make({ url: server.url, token: server.adminToken })
    const namespace = `bench-${runId()}`
    const created = yield* Effect.acquireRelease(
      admin.namespaceCreate(namespace, { description: "eventodb-kit bench" }),
      () =>
        admin.namespaceDelete(namespace).pipe(
          Effect.catchAll((error) => Effect.logWarning("could not delete the bench namespace", error))
        )
    )
    return { url: server.url, token: created.token, namespace, description: server.description }
  }).pipe(Effect.mapError((error) => new BenchError({ message: `EventoDB: ${error.message}`, cause: error })))

/** The HTTP client the benches use. */
export const httpClient: Layer.Layer<HttpClient.HttpClient> = NodeHttpClient.layerUndici

// --- output ---

/** A plain text table: the first row is the header; numbers are right-aligned. */
export const table = (rows: ReadonlyArray<ReadonlyArray<string | number>>): string => {
  const cells = rows.map((row) => row.map(String))
  const widths = cells[0]?.map((_, column) => Math.max(...cells.map((row) => row[column]?.length ?? 0))) ?? []
  const line = (row: ReadonlyArray<string>, raw: ReadonlyArray<string | number>) =>
    row.map((cell, column) =>
      typeof raw[column] === "number" ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0)
    ).join("  ").trimEnd()
  const [header, ...body] = cells
  if (header === undefined) return ""
  const rule = widths.map((width) => "-".repeat(width)).join("  ")
  return [line(header, rows[0] ?? []), rule, ...body.map((row, i) => line(row, rows[i + 1] ?? []))].join("\n")
}

/** Rounds for display. */
export const round = (value: number, digits = 2): number => {
  const factor = Math.pow(10, digits)
  return Math.round(value * factor) / factor
}

/** What a bench hands back: its JSON object and whether it met its bar. */
export interface Outcome {
  readonly json: Record<string, unknown>
  readonly ok: boolean
}

/**
 * Runs a bench: logs to stderr, every resource in one scope, then the JSON line on stdout once that scope has
 * closed. The exit code is 1 when the bench failed or missed its bar.
 */
export const main = <E>(bench: Effect.Effect<Outcome, E, Scope.Scope>): void => {
  const program = Effect.scoped(bench).pipe(
    Effect.flatMap((outcome) =>
      Effect.sync(() => {
        process.stdout.write(`${JSON.stringify(outcome.json)}\n`)
        if (!outcome.ok) process.exitCode = 1
      })
    ),
    Effect.tapErrorCause((cause) => Effect.logError("bench failed", cause)),
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)))
  )
  NodeRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })
}

/**
 * Runs `measure` against the EventoDB target and a scratch database, as `main` does. The namespace is deleted (and
 * the in-process server stopped) while the HTTP client and the pool still exist.
 */
export const mainWithTarget = <E>(
  measure: (
    target: EventoTarget
  ) => Effect.Effect<Outcome, E, Scope.Scope | PgClient.PgClient | SqlClient.SqlClient | HttpClient.HttpClient>
): void =>
  main(
    eventoTarget.pipe(
      Effect.flatMap(measure),
      Effect.scoped,
      Effect.provide(Layer.merge(postgres(), httpClient))
    )
  )
