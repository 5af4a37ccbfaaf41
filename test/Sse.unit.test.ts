import * as Sse from "@effect/experimental/Sse"
import { assert, describe, it } from "@effect/vitest"
import { feedLines } from "../src/internal/sse.js"

const replay = (count: number) =>
  Array.from(
    { length: count },
    (_, i) => `event: poke\ndata: {"stream":"a-${i}","position":0,"globalPosition":${i + 1}}\n\n`
  ).join("")

describe("subscription parsing", () => {
  it("parses a replay that arrives as one large chunk, feeding the parser a line at a time", () => {
    const fed: Array<string> = []
    const events: Array<string> = []
    const parser = Sse.makeParser((event) => {
      if (event._tag === "Event") events.push(event.data)
    })
    const counting: Sse.Parser = {
      feed: (chunk) => {
        fed.push(chunk)
        return parser.feed(chunk)
      },
      reset: () => parser.reset()
    }

    // A chunk that ends mid-line: the rest arrives with the next chunk.
    const body = replay(2000)
    const cut = body.length - 10
    assert.isUndefined(feedLines(counting, body.slice(0, cut)))
    assert.isUndefined(feedLines(counting, body.slice(cut)))

    assert.strictEqual(events.length, 2000)
    assert.deepStrictEqual(JSON.parse(events[1999]!), { stream: "a-1999", position: 0, globalPosition: 2000 })
    // The parser rescans its whole buffer for every line it finds: fed a line at a time it stays linear.
    assert.isTrue(fed.every((chunk) => chunk.indexOf("\n") === -1 || chunk.indexOf("\n") === chunk.length - 1))
  })
})
