/**
 * EventoDB's HTTP surface over the in-memory store, independent of any socket: routing, authentication (before the
 * body is read), `/rpc`, `/subscribe` (SSE pokes), `/health` and `/version`. The Node server and the in-process
 * `HttpClient` both hand their requests to the same `Handler`.
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as StreamName from "../streamName.js"
import * as Json from "./json.js"
import * as Rpc from "./rpc.js"
import type { MemoryStore, Namespace, Written } from "./store.js"
import * as Token from "./token.js"

/** An HTTP request, reduced to what the server reads. Header names are lower case. */
export interface Request {
  readonly method: string
  /** Path and query, e.g. `/subscribe?stream=a-1&token=...`. */
  readonly url: string
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly body: string
}

/** An HTTP response: a complete text, or the endless byte stream of an SSE subscription. */
export interface Response {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | Stream.Stream<Uint8Array>
}

/** The server over one store. */
export interface Handler {
  readonly store: MemoryStore
  readonly handle: (request: Request) => Effect.Effect<Response>
  /** Open SSE subscriptions, for tests. */
  readonly subscriptions: () => number
  /** Ends every open subscription and refuses new ones (they end at once), as a server shutdown does. */
  readonly shutdown: Effect.Effect<void>
}

/** Pokes a subscriber may hold before the server drops new ones, as the real server's channel. */
export const subscriberBuffer = 100

/** Messages replayed at most when a stream or category subscription opens. */
export const replayLimit = 1000

const json = (answer: Rpc.Answer): Response => ({
  status: answer.status,
  headers: { "content-type": "application/json" },
  body: answer.body
})

const text = (status: number, body: string): Response => ({
  status,
  headers: { "content-type": "text/plain; charset=utf-8" },
  body
})

const notFound = json(Rpc.failure("NOT_FOUND", "Endpoint not found", undefined, 404))

/** The namespace of the request's token (query parameter first, then `Authorization: Bearer`), or the refusal. */
const authenticate = (store: MemoryStore, request: Request, query: URLSearchParams): Namespace | Response => {
  let token = query.get("token") ?? ""
  if (token === "") {
    const header = request.headers["authorization"] ?? ""
    if (header === "") return json(Rpc.failure("AUTH_REQUIRED", "Authorization header required"))
    if (!header.startsWith("Bearer ")) {
      return json(Rpc.failure("AUTH_REQUIRED", "Authorization header must use Bearer scheme"))
    }
    token = header.slice("Bearer ".length)
    if (token === "") return json(Rpc.failure("AUTH_REQUIRED", "Token required"))
  }
  const parsed = Token.parse(token)
  if (parsed._tag === "Invalid") {
    return json(Rpc.failure("AUTH_INVALID_TOKEN", "Invalid token format", { error: parsed.error }))
  }
  const namespace = store.namespaces.get(parsed.namespace)
  if (namespace === undefined || namespace.tokenHash !== Token.hash(token)) {
    return json(Rpc.failure("AUTH_UNAUTHORIZED", "Token not authorized for namespace", { namespace: parsed.namespace }))
  }
  return namespace
}

const rpc = (store: MemoryStore, namespace: Namespace, request: Request): Response => {
  if (request.method !== "POST") return json(Rpc.failure("INVALID_REQUEST", "Only POST method allowed", undefined, 405))
  const call = Json.decodeArray(request.body)
  if (call._tag === "Left") {
    return json(Rpc.failure("INVALID_REQUEST", "Malformed JSON request", { error: call.error }))
  }
  return json(Rpc.dispatch(store, namespace, call.value))
}

// Go's strconv.ParseInt(s, 10, 64): an optional sign and decimal digits, within int64.
const parseInt64 = (value: string): number | undefined => {
  if (!/^[+-]?\d+$/.test(value)) return undefined
  const n = BigInt(value)
  return n >= -(2n ** 63n) && n < 2n ** 63n ? Number(n) : undefined
}

const encoder = new TextEncoder()

const poke = (written: Pick<Written, "stream" | "position" | "globalPosition">): string =>
  `event: poke\ndata: {"stream":${
    Json.encodeString(written.stream)
  },"position":${written.position},"globalPosition":${written.globalPosition}}\n\n`

type Target =
  | { readonly _tag: "Stream"; readonly stream: string }
  | { readonly _tag: "Category"; readonly category: string; readonly member: number; readonly size: number }
  | { readonly _tag: "All" }

/** The subscription a query asks for, or the plain-text 400 the server answers. */
const target = (query: URLSearchParams): { target: Target; position: number } | Response => {
  const stream = query.get("stream") ?? ""
  const category = query.get("category") ?? ""
  const all = query.get("all") === "true"
  if (!all && stream === "" && category === "") {
    return text(400, "Either 'stream', 'category', or 'all=true' parameter required")
  }
  if (all && (stream !== "" || category !== "")) return text(400, "Cannot combine 'all' with 'stream' or 'category'")
  if (stream !== "" && category !== "") return text(400, "Cannot specify both 'stream' and 'category'")
  let position = 0
  const positionText = query.get("position") ?? ""
  if (positionText !== "") {
    const parsed = parseInt64(positionText)
    if (parsed === undefined) return text(400, "Invalid position parameter")
    position = parsed
  }
  if (all) return { target: { _tag: "All" }, position }
  if (stream !== "") return { target: { _tag: "Stream", stream }, position }

  let member = 0
  let size = 0
  const memberText = query.get("consumer") ?? ""
  if (memberText !== "") {
    const parsed = parseInt64(memberText)
    if (parsed === undefined) return text(400, "Invalid consumer parameter")
    member = parsed
  }
  const sizeText = query.get("size") ?? ""
  if (sizeText !== "") {
    const parsed = parseInt64(sizeText)
    if (parsed === undefined) return text(400, "Invalid size parameter")
    size = parsed
  }
  if ((member > 0 || size > 0) && (size === 0 || member >= size)) {
    return text(400, "Invalid consumer group: member must be < size")
  }
  return { target: { _tag: "Category", category, member, size }, position }
}

/** Creates the handler; closing the scope ends every open subscription, as a server shutdown does. */
export const make = (store: MemoryStore): Effect.Effect<Handler, never, Scope.Scope> =>
  Effect.gen(function*() {
    const open = new Set<Queue.Queue<Written>>()
    let closed = false
    const shutdown = Effect.suspend(() => {
      closed = true
      return Effect.forEach([...open], Queue.shutdown, { discard: true })
    })
    yield* Effect.addFinalizer(() => shutdown)

    const subscribe = (namespace: Namespace, query: URLSearchParams): Effect.Effect<Response> => {
      const wanted = target(query)
      if ("status" in wanted) return Effect.succeed(wanted)
      const { position, target: to } = wanted
      return Effect.gen(function*() {
        const queue = yield* Queue.dropping<Written>(subscriberBuffer)
        // Replay and registration happen in one synchronous step, so no write falls between them (the real server
        // has a window there that loses pokes; nothing may rely on it).
        const { head, stop } = yield* Effect.sync(() => {
          let replay: ReadonlyArray<{ stream: string; position: number; globalPosition: number }> = []
          let accept: (written: Written) => boolean
          switch (to._tag) {
            case "Stream": {
              const messages = store.streamFromPosition(namespace, to.stream, position, replayLimit)
              replay = messages.map((m) => ({
                stream: m.streamName,
                position: m.position,
                globalPosition: m.globalPosition
              }))
              const from = messages.length > 0 ? messages[messages.length - 1]!.position + 1 : position
              accept = (w) => w.stream === to.stream && w.position >= from
              break
            }
            case "Category": {
              // The replay filters groups like category.get; live pokes use the same MD5 rule here, where the
              // real server uses another hash (PROTOCOL.md §11.2), so clients treat group pokes as hints only.
              const group = to.size > 0 ? { member: to.member, size: to.size } : undefined
              const messages = store.category(namespace, to.category, {
                from: position,
                limit: replayLimit,
                correlation: undefined,
                group
              })
              replay = messages.map((m) => ({
                stream: m.streamName,
                position: m.position,
                globalPosition: m.globalPosition
              }))
              const from = messages.length > 0 ? messages[messages.length - 1]!.globalPosition + 1 : position
              accept = (w) =>
                w.category === to.category && w.globalPosition >= from &&
                (group === undefined || StreamName.groupMember(w.stream, group.size) === group.member)
              break
            }
            case "All":
              accept = (w) => w.globalPosition >= position
              break
          }
          const head = to._tag === "All" ? [": ready\n\n"] : replay.map(poke)
          // A full buffer drops the poke, as the real server's channel does.
          const stop = store.listen(namespace, (w) => {
            if (accept(w)) Queue.unsafeOffer(queue, w)
          })
          open.add(queue)
          return { head, stop }
        })
        if (closed) yield* Queue.shutdown(queue)

        const close = Effect.sync(() => {
          stop()
          open.delete(queue)
        }).pipe(Effect.zipRight(Queue.shutdown(queue)))
        const body = Stream.fromIterable(head).pipe(
          Stream.concat(Stream.map(Stream.fromQueue(queue), poke)),
          Stream.map((chunk) => encoder.encode(chunk)),
          Stream.ensuring(close)
        )
        return {
          status: 200,
          headers: {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "connection": "keep-alive",
            "access-control-allow-origin": "*"
          },
          body
        } satisfies Response
      })
    }

    const handle = (request: Request): Effect.Effect<Response> =>
      Effect.suspend(() => {
        const url = new URL(request.url, "http://eventodb.invalid")
        switch (url.pathname) {
          case "/health":
            return Effect.succeed(json({ status: 200, body: `{"status":"ok"}\n` }))
          case "/version":
            return Effect.succeed(json({ status: 200, body: `{"version":"${Rpc.version}"}\n` }))
          case "/rpc":
          case "/subscribe": {
            const namespace = authenticate(store, request, url.searchParams)
            if ("status" in namespace) return Effect.succeed(namespace)
            return url.pathname === "/rpc" ?
              Effect.succeed(rpc(store, namespace, request)) :
              subscribe(namespace, url.searchParams)
          }
          default:
            return Effect.succeed(notFound)
        }
      })

    return { store, handle, subscriptions: () => open.size, shutdown }
  })
