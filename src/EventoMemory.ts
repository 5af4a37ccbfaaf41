/**
 * An `EventoClient` over a fresh in-memory store with the real server's semantics and no sockets: requests go
 * through an in-process `HttpClient` to the same handler `EventoTestServer` serves, so the client code under test
 * is exactly the one that talks to a real server.
 *
 * The store starts with two namespaces, as a real server in a test run does: `default`, whose token is
 * `ns_ZGVmYXVsdA_` followed by 64 zeros (the admin token of the SDK test runners), and the client's own namespace,
 * `test` unless `make` is told otherwise, with a generated token. The client can create further namespaces with
 * `namespaceCreate` and reach them with `withToken`.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { EventoClient } from "eventodb-kit"
 * import { EventoMemory } from "eventodb-kit/testing"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* EventoClient.EventoClient
 *   yield* client.streamWrite("account-1", { type: "Opened", data: {} })
 * }).pipe(Effect.provide(EventoMemory.layer))
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as EventoClient from "./EventoClient.js"
import * as InProcess from "./internal/memory/httpClient.js"
import * as Protocol from "./internal/memory/protocol.js"
import { MemoryStore } from "./internal/memory/store.js"
import * as Token from "./internal/memory/token.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The namespace the client works in. Default: `test`. */
  readonly namespace?: string | undefined
  /** Its token; it must name `namespace`. Default: a generated one. */
  readonly token?: string | Redacted.Redacted<string> | undefined
}

/** The base URL the in-process client uses; nothing listens there. */
const baseUrl = "http://eventodb.memory"

/**
 * A client over a fresh store; the store and its subscriptions end when the scope closes. Dies when `token` does
 * not parse or names another namespace (a mistake in the test, not a runtime condition).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<EventoClient.EventoClient.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const namespace = options.namespace ?? "test"
    const generated = namespace === "default" ? Token.defaultAdminToken : Token.generate(namespace)
    const token = options.token === undefined ? generated : Redacted.isRedacted(options.token) ?
      Redacted.value(options.token) :
      options.token
    const parsed = Token.parse(token)
    if (parsed._tag === "Invalid" || parsed.namespace !== namespace) {
      return yield* Effect.dieMessage(`EventoMemory: the token does not name namespace '${namespace}'`)
    }

    const store = new MemoryStore()
    store.createNamespace("default", namespace === "default" ? token : Token.defaultAdminToken, "Default namespace")
    if (namespace !== "default") store.createNamespace(namespace, token, "EventoMemory")
    const handler = yield* Protocol.make(store)
    return yield* EventoClient.make({ url: baseUrl, token: Redacted.make(token) }).pipe(
      Effect.provideService(HttpClient.HttpClient, InProcess.make(handler)),
      Effect.orDie
    )
  })

/**
 * An `EventoClient` in namespace `test` of a fresh in-memory store.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<EventoClient.EventoClient> = Layer.scoped(EventoClient.EventoClient, make())
