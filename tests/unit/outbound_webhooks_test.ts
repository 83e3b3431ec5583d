import assert from "node:assert/strict";
import {
  checkEndpointUrl,
  checkTarget,
  generateSigningSecret,
  isForbiddenAddress,
  signWebhook,
} from "../../functions/_shared/outbound_webhooks.ts";
import { test } from "../_helpers.ts";

test("signWebhook() matches the Standard Webhooks reference vector", async () => {
  const signature = await signWebhook(
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    '{"test": 2432232314}',
  );
  assert.equal(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
});

test("generateSigningSecret() makes distinct whsec_ secrets of 32 bytes", () => {
  const [a, b] = [generateSigningSecret(), generateSigningSecret()];
  assert.match(a, /^whsec_[A-Za-z0-9+/]{43}=$/);
  assert.notEqual(a, b);
});

test("isForbiddenAddress() refuses loopback, private, link-local, CGNAT, multicast and mapped forms", () => {
  for (
    const address of [
      "127.0.0.1",
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "224.0.0.1",
      "::1",
      "::",
      "fc00::1",
      "fd12::1",
      "fe80::1",
      "ff02::1",
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
      "64:ff9b::10.0.0.1",
      "[::1]",
    ]
  ) assert.equal(isForbiddenAddress(address), true, address);
  for (const address of ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]) {
    assert.equal(isForbiddenAddress(address), false, address);
  }
});

test("checkEndpointUrl() wants https, no credentials and no local hosts unless allowed", () => {
  const strict = { allowLocalTargets: false };
  assert.equal(checkEndpointUrl("https://hooks.example.com/x", strict), null);
  assert.match(checkEndpointUrl("http://hooks.example.com/x", strict)!, /https/);
  assert.match(checkEndpointUrl("https://user:pw@hooks.example.com/x", strict)!, /credentials/);
  assert.match(checkEndpointUrl("https://localhost/x", strict)!, /local host/);
  assert.match(checkEndpointUrl("https://10.0.0.5/x", strict)!, /private/);
  assert.match(checkEndpointUrl("https://[::1]:8443/x", strict)!, /private/);
  assert.match(checkEndpointUrl("not a url", strict)!, /not valid/);
  assert.equal(checkEndpointUrl("http://127.0.0.1:9000/x", { allowLocalTargets: true }), null);
});

test("checkTarget() refuses a literal private address without resolving anything", async () => {
  assert.match((await checkTarget("https://192.168.0.10/hook", { allowLocalTargets: false }))!, /private/);
  assert.equal(await checkTarget("http://127.0.0.1:1/hook", { allowLocalTargets: true }), null);
});
