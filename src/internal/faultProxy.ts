/**
 * The HTTP proxy behind `FaultProxy`: Node's `http` module, owned by a Scope.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import type * as Net from "node:net"
import type { FaultProxy, MatchedRequest, Options, ProxiedRequest } from "../FaultProxy.js"

interface Failure {
  readonly status: number
  readonly body: string
  readonly contentType: string
}

interface Rule {
  readonly matches: (request: MatchedRequest) => boolean
  readonly ms: number
}

interface State {
  latencyMs: number
  rules: Array<Rule>
  stallUntil: number
  failures: Array<Failure>
  garbage: number
  dropPokes: boolean
}

const garbageBody = "<html><body><h1>502 Bad Gateway</h1><p>FaultProxy garbage</p></body></html>"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Waits `ms`, or less if the client goes away: a held request then never reaches the server. */
const sleepUnlessClosed = (ms: number, res: Http.ServerResponse) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer)
      res.off("close", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    res.on("close", done)
  })

const readBody = (req: Http.IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

const listen = (server: Http.Server, port: number) =>
  new Promise<number>((resolve, reject) => {
    const onError = (error: Error) => reject(error)
    server.once("error", onError)
    server.listen(port, "127.0.0.1", () => {
      server.off("error", onError)
      const address = server.address() as Net.AddressInfo
      resolve(address.port)
    })
  })

/** Builds the proxy; it stops, with every connection, when the scope closes. */
export const make = (options: Options): Effect.Effect<FaultProxy.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const upstream = new URL(options.upstream)
    const state: State = { latencyMs: 0, rules: [], stallUntil: 0, failures: [], garbage: 0, dropPokes: false }
    const sockets = new Set<Net.Socket>()
    const upstreamRequests = new Set<Http.ClientRequest>()
    const subscriptions = new Set<Http.ServerResponse>()
    const log: Array<ProxiedRequest> = []
    const agent = new Http.Agent({ keepAlive: true })

    const forwardSse = (upstreamResponse: Http.IncomingMessage, res: Http.ServerResponse) => {
      subscriptions.add(res)
      res.on("close", () => subscriptions.delete(res))
      res.flushHeaders()
      // Whole events only, so that dropping pokes never leaves half an event on the wire.
      let pending = ""
      upstreamResponse.setEncoding("utf8")
      upstreamResponse.on("data", (text: string) => {
        pending += text
        const blocks = pending.split(/\r?\n\r?\n/)
        pending = blocks.pop() ?? ""
        for (const block of blocks) {
          const isPoke = /^event:\s*poke\s*$/m.test(block)
          if (!(isPoke && state.dropPokes)) res.write(`${block}\n\n`)
        }
      })
      upstreamResponse.on("end", () => res.end())
      upstreamResponse.on("error", () => res.destroy())
    }

    // `body` is the request's body when it was read already (to match a rule), otherwise it is streamed through.
    const forward = (req: Http.IncomingMessage, res: Http.ServerResponse, body?: Buffer) => {
      const headers = { ...req.headers, host: upstream.host }
      const upstreamRequest = Http.request({
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers,
        agent
      })
      upstreamRequests.add(upstreamRequest)
      upstreamRequest.on("close", () => upstreamRequests.delete(upstreamRequest))
      upstreamRequest.on("response", (upstreamResponse) => {
        res.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers)
        const contentType = upstreamResponse.headers["content-type"] ?? ""
        if (contentType.startsWith("text/event-stream")) forwardSse(upstreamResponse, res)
        else upstreamResponse.pipe(res)
      })
      upstreamRequest.on("error", () => {
        if (res.headersSent) {
          res.destroy()
        } else {
          res.writeHead(502, { "content-type": "text/plain" })
          res.end("FaultProxy: upstream unreachable")
        }
      })
      // A client that goes away takes its upstream request with it (an SSE subscription, mostly).
      res.on("close", () => {
        if (!res.writableFinished) upstreamRequest.destroy()
      })
      if (body === undefined) req.pipe(upstreamRequest)
      else upstreamRequest.end(body)
    }

    const handle = async (req: Http.IncomingMessage, res: Http.ServerResponse) => {
      log.push({ method: req.method ?? "GET", path: req.url ?? "/" })
      // Held while a stall lasts (it may be extended meanwhile), then delayed by the latency.
      for (let wait = state.stallUntil - Date.now(); wait > 0; wait = state.stallUntil - Date.now()) {
        await sleep(wait)
      }
      if (state.latencyMs > 0) await sleep(state.latencyMs)
      // The body is read only while a rule wants to see it, so that other requests stream through as before.
      let body: Buffer | undefined
      if (state.rules.length > 0) {
        const rules = state.rules
        body = await readBody(req)
        const request = { method: req.method ?? "GET", path: req.url ?? "/", body: body.toString("utf8") }
        const ms = Math.max(0, ...rules.filter((rule) => rule.matches(request)).map((rule) => rule.ms))
        if (ms > 0) await sleepUnlessClosed(ms, res)
        if (res.destroyed) return
      }
      if (req.socket.destroyed) return
      const failure = state.failures.shift()
      if (failure !== undefined) {
        res.writeHead(failure.status, { "content-type": failure.contentType })
        res.end(failure.body)
        return
      }
      if (state.garbage > 0) {
        state.garbage -= 1
        res.writeHead(200, { "content-type": "application/json" })
        res.end(garbageBody)
        return
      }
      forward(req, res, body)
    }

    const server = Http.createServer((req, res) => {
      handle(req, res).catch(() => res.destroy())
    })
    server.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })

    const closeAll = () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const request of upstreamRequests) request.destroy()
        for (const socket of sockets) socket.destroy()
        // Their "close" events come later; they are gone now.
        subscriptions.clear()
      })

    const port = yield* Effect.promise(() => listen(server, 0))
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        if (server.listening) await closeAll()
        agent.destroy()
      })
    )

    const down = () =>
      Effect.promise(async () => {
        if (server.listening) await closeAll()
      })

    const up = () =>
      Effect.promise(async () => {
        if (!server.listening) await listen(server, port)
      })

    return {
      url: `http://127.0.0.1:${port}`,
      down,
      up,
      latency: (duration) =>
        Effect.sync(() => {
          state.latencyMs = Duration.toMillis(duration)
        }),
      latencyWhen: (predicate, duration) =>
        Effect.sync(() => {
          state.rules.push({ matches: predicate, ms: Duration.toMillis(duration) })
        }),
      failNext: (n, status, body) =>
        Effect.sync(() => {
          const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body)
          const contentType = typeof body === "string" || body === undefined ? "text/plain" : "application/json"
          for (let i = 0; i < n; i++) state.failures.push({ status, body: text, contentType })
        }),
      garbageNext: (n) =>
        Effect.sync(() => {
          state.garbage += n
        }),
      stall: (duration) =>
        Effect.sync(() => {
          state.stallUntil = Date.now() + Duration.toMillis(duration)
        }),
      dropPokes: (on) =>
        Effect.sync(() => {
          state.dropPokes = on
        }),
      reset: () =>
        Effect.zipRight(
          Effect.sync(() => {
            Object.assign(state, { latencyMs: 0, rules: [], stallUntil: 0, failures: [], garbage: 0, dropPokes: false })
          }),
          up()
        ),
      openSubscriptions: Effect.sync(() => subscriptions.size),
      requests: Effect.sync(() => [...log])
    }
  })
