/**
 * Serves a protocol `Handler` on a Node `http` server, as a scoped resource. SSE bodies are written with
 * backpressure, so a client that stops reading fills its 100-poke buffer and loses pokes, as with the real server.
 * Closing the scope ends every subscription cleanly, then closes every connection.
 */
import * as Deferred from "effect/Deferred"
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

// Timer-based rather than Effect's Clock: a server started under TestClock must still shut down.
const sleep = (millis: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

// Finalizers run uninterruptibly, and so would the losing side of a race inside one; make the race interruptible.
const waitAtMost = (effect: Effect.Effect<void>, millis: number): Effect.Effect<void> =>
  Effect.interruptible(Effect.raceFirst(effect, sleep(millis)))

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
    const requests = yield* FiberSet.make()
    const run = yield* FiberSet.runtime(requests)<never>()

    const onRequest = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
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
    const closed = yield* Deferred.make<void>()
    server.on("close", () => Deferred.unsafeDone(closed, Effect.void))

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
          yield* waitAtMost(FiberSet.awaitEmpty(requests), 1000)
          server.closeIdleConnections()
          yield* waitAtMost(Deferred.await(closed), 1000)
          server.closeAllConnections()
        })
    )
    return (server.address() as AddressInfo).port
  })
