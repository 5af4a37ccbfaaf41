/**
 * The EventoDB a test file runs against: the real server named by `EVENTODB_URL` and `EVENTODB_ADMIN_TOKEN` when
 * both are set, else an in-process `EventoTestServer` on a free 127.0.0.1 port. Each test gets a namespace of its
 * own, created with the admin token and deleted afterwards, so the same test runs on either server.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as EventoClient from "../../src/EventoClient.js"
import * as EventoTestServer from "../../src/EventoTestServer.js"

export interface Target {
  readonly url: string
  readonly adminToken: Redacted.Redacted<string>
  /** True when the target is a real server from the environment. */
  readonly external: boolean
}

export class EventoTarget extends Context.Tag("test/EventoTarget")<EventoTarget, Target>() {}

/** `EVENTODB_URL` + `EVENTODB_ADMIN_TOKEN` when set, else an in-process server on a free port. */
export const layerTarget: Layer.Layer<EventoTarget> = Layer.unwrapEffect(Effect.sync(() => {
  const url = process.env.EVENTODB_URL
  const adminToken = process.env.EVENTODB_ADMIN_TOKEN
  if (url && adminToken) {
    return Layer.succeed(EventoTarget, {
      url: url.replace(/\/+$/, ""),
      adminToken: Redacted.make(adminToken),
      external: true
    })
  }
  return Layer.effect(
    EventoTarget,
    Effect.map(EventoTestServer.EventoTestServer, (server) => ({
      url: server.url,
      adminToken: server.adminToken,
      external: false
    }))
  ).pipe(Layer.provide(EventoTestServer.layer()), Layer.orDie)
}))

/** One RPC call with the admin token; the test dies on anything but a 200. */
export const adminRpc = (
  target: Target,
  body: ReadonlyArray<unknown>
): Effect.Effect<unknown> =>
  Effect.tryPromise(async () => {
    const response = await fetch(`${target.url}/rpc`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${Redacted.value(target.adminToken)}` },
      body: JSON.stringify(body)
    })
    const text = await response.text()
    if (response.status !== 200) throw new Error(`${String(body[0])} answered ${response.status}: ${text}`)
    return JSON.parse(text) as unknown
  }).pipe(Effect.orDie)

let counter = 0

/** A namespace with a unique name, created with the admin token; deleted when the scope closes. */
export const freshNamespace: Effect.Effect<
  { readonly namespace: string; readonly token: Redacted.Redacted<string> },
  never,
  EventoTarget | Scope.Scope
> = Effect.gen(function*() {
  const target = yield* EventoTarget
  const namespace = `test-${Date.now().toString(36)}-${process.pid.toString(36)}-${(counter++).toString(36)}-${
    Math.random().toString(36).slice(2, 7)
  }`
  const created = yield* Effect.acquireRelease(
    adminRpc(target, ["ns.create", namespace, { description: "eventodb-kit test" }]),
    () => adminRpc(target, ["ns.delete", namespace]).pipe(Effect.catchAllDefect(() => Effect.void))
  )
  const token = (created as { readonly token?: unknown }).token
  if (typeof token !== "string") return yield* Effect.dieMessage(`ns.create answered without a token`)
  return { namespace, token: Redacted.make(token) }
})

/** The target, an `EventoClient` on a fresh namespace, and the `HttpClient` it uses. */
export const layer: Layer.Layer<EventoTarget | EventoClient.EventoClient | HttpClient.HttpClient> = Layer.unwrapScoped(
  Effect.gen(function*() {
    const target = yield* EventoTarget
    const { token } = yield* freshNamespace
    return EventoClient.layer({ url: target.url, token })
  })
).pipe(
  Layer.orDie,
  Layer.provideMerge(NodeHttpClient.layerUndici),
  Layer.provideMerge(layerTarget)
)
