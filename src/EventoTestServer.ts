/**
 * An EventoDB-compatible server in the test process: the in-memory store with the real server's semantics
 * (EventoDB 0.7.0, Postgres backend, auth enforced), served over HTTP on 127.0.0.1. Tests and local work run against
 * it without Docker or Go; the same tests run against a real server by pointing them at its URL instead.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { EventoTestServer } from "eventodb-kit/testing"
 *
 * const program = Effect.gen(function*() {
 *   const server = yield* EventoTestServer.EventoTestServer
 *   console.log(server.url) // http://127.0.0.1:<free port>
 * }).pipe(Effect.provide(EventoTestServer.layer()))
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as NodeServer from "./internal/memory/nodeServer.js"
import * as Protocol from "./internal/memory/protocol.js"
import { MemoryStore } from "./internal/memory/store.js"
import * as Token from "./internal/memory/token.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** TCP port; 0 picks a free one. Default: 0. */
  readonly port?: number | undefined
  /** The `default` namespace's token (the admin token). Default: `ns_ZGVmYXVsdA_` followed by 64 zeros. */
  readonly token?: string | Redacted.Redacted<string> | undefined
  /** Interface to bind. Default: `127.0.0.1`. */
  readonly host?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace EventoTestServer {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** Base URL, e.g. `http://127.0.0.1:41234`. */
    readonly url: string
    /** The `default` namespace's token: it can create and delete namespaces. */
    readonly adminToken: Redacted.Redacted<string>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export class EventoTestServer extends Context.Tag("eventodb-kit/EventoTestServer")<
  EventoTestServer,
  EventoTestServer.Service
>() {}

/**
 * The server could not start: the token is not a `default`-namespace token, or the port could not be bound.
 *
 * @since 0.1.0
 * @category errors
 */
export class EventoTestServerError extends Data.TaggedError("EventoTestServerError")<{
  readonly reason: "invalid-token" | "listen"
  readonly message: string
  readonly cause?: unknown
}> {}

/** The default admin token, `ns_ZGVmYXVsdA_` followed by 64 zeros, as the EventoDB SDK test runners use. */
const defaultToken = Token.defaultAdminToken

/**
 * Starts a server on a fresh store whose `default` namespace has the given token; it stops, closing every
 * subscription, when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<EventoTestServer.Service, EventoTestServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const token = options.token === undefined ? defaultToken : Redacted.isRedacted(options.token) ?
      Redacted.value(options.token) :
      options.token
    const parsed = Token.parse(token)
    if (parsed._tag === "Invalid" || parsed.namespace !== "default") {
      return yield* new EventoTestServerError({
        reason: "invalid-token",
        message: parsed._tag === "Invalid" ? parsed.error : "the token is not for namespace 'default'"
      })
    }

    const store = new MemoryStore()
    store.createNamespace("default", token, "Default namespace")
    const handler = yield* Protocol.make(store)
    const host = options.host ?? "127.0.0.1"
    const port = yield* NodeServer.serve(handler, { host, port: options.port ?? 0 }).pipe(
      Effect.mapError((cause) =>
        new EventoTestServerError({ reason: "listen", message: `cannot listen on ${host}: ${cause.message}`, cause })
      )
    )
    yield* Effect.annotateLogs(Effect.logDebug("EventoTestServer listening"), { port })

    const urlHost = host.includes(":") ? `[${host}]` : host
    return { url: `http://${urlHost}:${port}`, adminToken: Redacted.make(token) }
  })

/**
 * The server as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<EventoTestServer, EventoTestServerError> =>
  Layer.scoped(EventoTestServer, make(options))
