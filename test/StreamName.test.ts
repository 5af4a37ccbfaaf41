import { assert, describe, it } from "@effect/vitest"
import * as StreamName from "../src/internal/streamName.js"

describe("StreamName", () => {
  it("takes the category before the first dash, or the whole name", () => {
    assert.strictEqual(StreamName.category("account-123+x"), "account")
    assert.strictEqual(StreamName.category("order_item-5"), "order_item")
    assert.strictEqual(StreamName.category("sse-test-1-2"), "sse")
    assert.strictEqual(StreamName.category("account"), "account")
    assert.strictEqual(StreamName.category("-x"), "")
  })

  it("takes the id after the first dash and the cardinal id up to the first plus", () => {
    assert.strictEqual(StreamName.id("account-123+456"), "123+456")
    assert.strictEqual(StreamName.cardinalId("account-123+456"), "123")
    assert.strictEqual(StreamName.cardinalId("class_membership-class-7+student-9"), "class-7")
    assert.strictEqual(StreamName.id("account"), undefined)
    assert.strictEqual(StreamName.cardinalId("account"), undefined)
    assert.strictEqual(StreamName.cardinalId("account-"), "")
    assert.isTrue(StreamName.isCategory("account"))
    assert.isFalse(StreamName.isCategory("account-1"))
  })

  // PROTOCOL.md §11.1: stream, signed hash of md5(cardinal id), member at sizes 2, 3, 4.
  const vectors: ReadonlyArray<readonly [string, bigint, number, number, number]> = [
    ["account-123", 2318431741638412123n, 1, 1, 3],
    ["account-123+retry", 2318431741638412123n, 1, 1, 3],
    ["account-456", 2669782135874207551n, 1, 1, 3],
    ["account-abc", -8070080442485551184n, 0, 2, 0],
    ["test-1", -4266524885998034046n, 0, 0, 2],
    ["test-2", -4026655064267673757n, 1, 1, 1],
    ["test-3", -1383792015730482434n, 0, 2, 2],
    ["test-4", -6305049951010035939n, 1, 0, 3]
  ]

  for (const [stream, signed, size2, size3, size4] of vectors) {
    it(`assigns ${stream} to the members of the protocol's test vectors`, () => {
      assert.strictEqual(StreamName.groupHash(stream), signed < 0n ? -signed : signed)
      assert.strictEqual(StreamName.groupMember(stream, 2), size2)
      assert.strictEqual(StreamName.groupMember(stream, 3), size3)
      assert.strictEqual(StreamName.groupMember(stream, 4), size4)
    })
  }

  it("assigns a stream without an id to no member, and an empty id by md5('')", () => {
    assert.strictEqual(StreamName.groupMember("account", 2), undefined)
    // md5('') starts d41d8cd98f00b204: negative as a signed 64-bit integer, so its absolute value is 2^64 minus it.
    assert.strictEqual(StreamName.groupHash("account-"), (1n << 64n) - 0xd41d8cd98f00b204n)
    assert.strictEqual(StreamName.groupMember("account-+x", 3), StreamName.groupMember("other-", 3))
  })
})
