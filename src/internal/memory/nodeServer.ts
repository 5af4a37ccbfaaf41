/**
 * Serves a protocol `Handler` on a Node `http` server, as a scoped resource. SSE bodies are written with
 * backpressure, so a client that stops reading fills its 100-poke buffer and loses pokes, as with the real server.
 * Closing the scope ends every subscription cleanly, then closes every connection.
 */
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import type * as Protocol from "./protocol.js"

/** The server's request body limit (100 MB). */
const maxBodyBytes = 100 * 1024 * 1024

const headersOf = (request: Http.IncomingMessage): Record<string, string | undefined> => {
  const headers: Record<string, string | undefined> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    headers[name] = Array.isArray(value) ? value.join(", ") : value
  }
  return headers
}

// Resolves when the socket can take more, or when the client has gone (the stream is then interrupted anyway).
const drained = (response: Http.ServerResponse): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const done = () => {
      response.off("drain", done)
      response.off("close", done)
      resume(Effect.void)
    }
    response.on("drain", done)
    response.on("close", done)
  })

// Resolves once `register` calls back, or after `millis`. Callback-based rather than a race: a race needs
// interruption, which a finalizer of an interrupted fiber must not re-enable (it would abort the finalizer), and
// timer-based rather than Effect's Clock, so a server started under TestClock still shuts down.
const within = (millis: number, register: (done: () => void) => void): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    let finished = false
    const done = () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      resume(Effect.void)
    }
    const timer = setTimeout(done, millis)
    register(done)
  })

const respond = (response: Http.ServerResponse, answer: Protocol.Response): Effect.Effect<void> => {
  const body = answer.body
  if (typeof body === "string") {
    return Effect.sync(() => {
      response.writeHead(answer.status, { ...answer.headers, "content-length": Buffer.byteLength(body) })
      response.end(body)
    })
  }
  return Effect.sync(() => {
    response.writeHead(answer.status, answer.headers)
    response.flushHeaders()
  }).pipe(
    Effect.zipRight(Stream.runForEach(body, (chunk) => response.write(chunk) ? Effect.void : drained(response))),
    Effect.zipRight(Effect.sync(() => response.end()))
  )
}

/** Listens on `host:port` (0: a free port) until the scope closes; yields the bound port. */
export const serve = (
  handler: Protocol.Handler,
  options: { readonly host: string; readonly port: number }
): Effect.Effect<number, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const run = yield* FiberSet.makeRuntime<never>()
    // Responses not finished yet, so shutdown can wait for the subscriptions it ends to send their last chunk.
    const unfinished = new Set<Http.ServerResponse>()
    let emptied: (() => void) | undefined
    const finished = (response: Http.ServerResponse) => {
      unfinished.delete(response)
      if (unfinished.size === 0) emptied?.()
    }

    const onRequest = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      unfinished.add(response)
      response.once("finish", () => finished(response))
      response.once("close", () => finished(response))
      const chunks: Array<Buffer> = []
      let size = 0
      request.on("data", (chunk: Buffer) => {
        size += chunk.length
        if (size > maxBodyBytes) {
          response.writeHead(413, { "content-type": "text/plain; charset=utf-8", "connection": "close" })
          response.end("Request Entity Too Large")
          request.destroy()
          return
        }
        chunks.push(chunk)
      })
      request.on("end", () => {
        if (size > maxBodyBytes) return
        const fiber = run(
          handler.handle({
            method: request.method ?? "GET",
            url: request.url ?? "/",
            headers: headersOf(request),
            body: Buffer.concat(chunks).toString("utf8")
          }).pipe(Effect.flatMap((answer) => respond(response, answer)))
        )
        // A client that goes away interrupts its request, which ends its subscription.
        response.on("close", () => {
          if (!response.writableFinished) fiber.unsafeInterruptAsFork(fiber.id())
        })
      })
    }

    const server = Http.createServer({ keepAliveTimeout: 120_000 }, onRequest)
    let closed = false
    server.once("close", () => {
      closed = true
    })

    yield* Effect.acquireRelease(
      Effect.async<void, Error>((resume) => {
        const onError = (error: Error) => resume(Effect.fail(error))
        server.once("error", onError)
        server.listen(options.port, options.host, () => {
          server.off("error", onError)
          resume(Effect.void)
        })
      }),
      () =>
        Effect.gen(function*() {
          // Stop accepting, end the subscriptions so their responses finish, then drop what is left.
          server.close()
          yield* handler.shutdown
          yield* within(1000, (done) => {
            emptied = done
            if (unfinished.size === 0) done()
          })
          server.closeIdleConnections()
          yield* within(1000, (done) => closed ? done() : server.once("close", done))
          server.closeAllConnections()
        })
    )
    return (server.address() as AddressInfo).port
  })
