// Bake the gateway's compile cache into the image, so that a fresh container's first start is warm.
//
// Who runs it: the Dockerfile, as root, right after the gateway's npm install, in every build
// (scripts/build-image, `docker compose build`, a plain `docker build`), with a network or without;
// a derived image that installs another gateway can run it again the same way. It starts the
// gateway once, as the image's `node` user, as the image runs it, waits until it answers and is
// ready, stops it (Node writes its compile cache on the way out) and keeps nothing of that start
// but the cache.
//
// Offline by the gateway's own settings, not the build's: once up, the gateway calls out (the
// hosted model catalog, the plugin feed of its Control UI). Its managed proxy setting,
// OPENCLAW_PROXY_URL, routes all of its HTTP and WebSocket egress through a forward proxy and
// resolves no name itself (its docs: security/network-proxy.md); here that proxy is this script, on
// loopback, refusing every request and noting what was asked. The kernel then says whether
// anything left all the same: packets sent on any interface but loopback, and attempts that found
// no route (a build without a network), counted before and after; any at all fails the build. A
// gateway whose docs have no such setting (openclaw 2026.1) is not baked.
//
// Where the cache goes: the gateway's launcher enables Node's compile cache in-process under
// os.tmpdir()/node-compile-cache (no NODE_COMPILE_CACHE: with it set, the launcher re-spawns itself
// as a child, and the supervised pid would be a wrapper). /tmp/node-compile-cache is therefore a
// link to /var/cache/moltbot/node-compile-cache, which the image carries; the init makes the same
// link in a /tmp that is a fresh tmpfs (read-only root), where the cache is then read, not written.
// Node files it under the gateway's version and package.json's mtime and size, then its own tag
// (Node version, architecture, V8 flags, uid): any other gateway, Node or uid just misses it.

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";

const CACHE = "/var/cache/moltbot/node-compile-cache";
const LINK = "/tmp/node-compile-cache";
const PORT = 18789;
const PROXY_DOCS = "/app/node_modules/openclaw/docs/security/network-proxy.md";
const ANSWER_TIMEOUT_MS = 300_000; // a first start takes 15-70 s on two busy cores
const READY_TIMEOUT_MS = 60_000;
const QUIET_MS = 5_000;
const SETTLE_MS = 3_000; // modules the gateway imports just after "ready"
// Up: 2026.9 answers /healthz; 2026.1 has no probes, it says where it listens.
const LISTENING = /\[gateway\] listening on |http server listening/;
const EXIT_TIMEOUT_MS = 120_000; // writing the cache at exit takes seconds

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// A deadline that keeps nobody waiting once it no longer matters: a pending timer of 2 minutes kept
// this step alive that long after its work was done.
const deadline = (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref());
const say = (text) => process.stdout.write(`warm-compile-cache: ${text}\n`);

function documentsItsProxy() {
  return fs.existsSync(PROXY_DOCS) && fs.readFileSync(PROXY_DOCS, "utf8").includes("OPENCLAW_PROXY_URL");
}

function refusingProxy() {
  // A forward proxy on loopback that answers every request 403: the first line of each (CONNECT
  // host:port, or an absolute URL) says where the gateway meant to go.
  const asked = new Set();
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", (chunk) => {
      const [method = "", target = ""] = chunk.toString("latin1").split("\r\n", 1)[0].split(" ");
      asked.add(method === "CONNECT" ? target : URL.parse(target)?.host || target);
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({ server, asked, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

function trafficOutsideLoopback() {
  // Packets sent on every interface but loopback (a build with a network), and packets the kernel
  // found no route for (a build without one: a lookup or a connection that tried to leave).
  const sent = fs
    .readFileSync("/proc/net/dev", "utf8")
    .split("\n")
    .slice(2)
    .map((line) => line.trim().split(/[:\s]+/))
    .filter((fields) => fields.length > 10 && fields[0] !== "lo")
    .reduce((total, fields) => total + Number(fields[10]), 0); // its transmitted packets
  const [names, values] = fs
    .readFileSync("/proc/net/snmp", "utf8")
    .split("\n")
    .filter((line) => line.startsWith("Ip:"))
    .map((line) => line.split(/\s+/));
  const v6 = fs.existsSync("/proc/net/snmp6") ? fs.readFileSync("/proc/net/snmp6", "utf8") : "";
  const v6NoRoute = Number(/^Ip6OutNoRoutes\s+(\d+)/m.exec(v6)?.[1] ?? 0);
  return sent + Number(values[names.indexOf("OutNoRoutes")]) + v6NoRoute;
}

function nodeUser() {
  const entry = fs
    .readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .map((line) => line.split(":"))
    .find((fields) => fields[0] === "node");
  if (!entry) throw new Error("no `node` user in /etc/passwd");
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}

function scratch(user) {
  const root = fs.mkdtempSync("/tmp/warm-");
  const dirs = { root, state: `${root}/state`, home: `${root}/home`, workspace: `${root}/workspace` };
  for (const dir of Object.values(dirs)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chownSync(dir, user.uid, user.gid);
  }
  return dirs;
}

function startGateway(user, dirs, proxyUrl) {
  // The environment the init gives openclaw (moltbot/profile.py), in scratch directories, with
  // every call out going to the refusing proxy.
  const env = {
    ...process.env,
    HOME: dirs.home,
    USER: "node",
    LOGNAME: "node",
    OPENCLAW_STATE_DIR: dirs.state,
    OPENCLAW_WORKSPACE_DIR: dirs.workspace,
    OPENCLAW_GATEWAY_TOKEN: `warm-${process.pid}-${Date.now()}`,
    OPENCLAW_SUPERVISOR_MODE: "external",
    OPENCLAW_DISABLE_BONJOUR: "1",
    OPENCLAW_NO_AUTO_UPDATE: "1",
    OPENCLAW_PROXY_URL: proxyUrl,
  };
  const args = ["/app/moltbot.mjs", "gateway", "--allow-unconfigured", "--bind", "lan"];
  const child = spawn("node", [...args, "--port", String(PORT)], {
    cwd: dirs.home,
    env,
    uid: user.uid,
    gid: user.gid,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.output = [];
  child.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding("utf8");
    stream.on("data", (text) => child.output.push(...text.split("\n").filter(Boolean)));
  }
  return child;
}

function answers() {
  // The Control UI answers every path with 200: only the probe's own JSON counts.
  return new Promise((resolve) => {
    const request = http.get({ host: "127.0.0.1", port: PORT, path: "/healthz", timeout: 2000 }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => {
        try {
          resolve(JSON.parse(body).ok === true);
        } catch {
          resolve(false);
        }
      });
    });
    request.on("timeout", () => request.destroy());
    request.on("error", () => resolve(false));
  });
}

async function settled(gateway) {
  // What the gateway imports once it is up: until it says it is ready (2026.9), or, for a
  // generation that never says so, until its output has been quiet for a few seconds.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lines = gateway.output.length;
  let quietSince = Date.now();
  while (Date.now() < deadline && !gateway.output.some((line) => line.includes("[gateway] ready"))) {
    if (gateway.output.length !== lines) [lines, quietSince] = [gateway.output.length, Date.now()];
    else if (Date.now() - quietSince >= QUIET_MS) break;
    await sleep(250);
  }
  await sleep(SETTLE_MS);
}

async function until(what, condition, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await condition()) return;
    await sleep(250);
  }
  throw new Error(`the gateway did not ${what} (${child.output.slice(-30).join("\n")})`);
}

function summary(dir) {
  let files = 0;
  let bytes = 0;
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      files += 1;
      bytes += fs.statSync(path.join(entry.parentPath, entry.name)).size;
    }
  }
  return { files, bytes };
}

function openToOtherUsers(dir) {
  // Node adds a directory per uid (its tag) under the gateway's key: the directories above the
  // tags stay open to every uid (sticky, as /tmp), so that a gateway run under another uid keeps a
  // cache of its own instead of none.
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  if (entries.some((entry) => entry.isFile())) return;
  fs.chmodSync(dir, 0o1777);
  for (const entry of entries) {
    if (entry.isDirectory()) openToOtherUsers(path.join(dir, entry.name));
  }
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync("/app/gateway.json", "utf8"));
  if (manifest.name !== "openclaw") {
    say(`nothing to bake: ${manifest.name} ${manifest.version} enables no compile cache`);
    return;
  }
  if (!documentsItsProxy()) {
    say(`not baked: ${manifest.name} ${manifest.version} has no setting that keeps it offline (OPENCLAW_PROXY_URL)`);
    return;
  }
  const user = nodeUser();
  fs.rmSync(LINK, { recursive: true, force: true });
  fs.rmSync(CACHE, { recursive: true, force: true });
  fs.mkdirSync(CACHE, { recursive: true });
  fs.chmodSync(CACHE, 0o1777);
  fs.symlinkSync(CACHE, LINK);
  const dirs = scratch(user);
  const proxy = await refusingProxy();
  const trafficBefore = trafficOutsideLoopback();
  const started = Date.now();
  const gateway = startGateway(user, dirs, proxy.url);
  try {
    const up = async () => gateway.output.some((line) => LISTENING.test(line)) || (await answers());
    await until("come up", up, gateway, ANSWER_TIMEOUT_MS);
    const upAt = Date.now();
    await settled(gateway);
    gateway.kill("SIGTERM");
    const stopping = Date.now();
    const exit = await Promise.race([gateway.exited, deadline(EXIT_TIMEOUT_MS).then(() => null)]);
    if (exit === null) throw new Error("the gateway did not exit after SIGTERM");
    const left = trafficOutsideLoopback() - trafficBefore;
    if (left > 0) throw new Error(`${left} packet(s) left loopback: a call out that its proxy setting did not take`);
    const { files, bytes } = summary(CACHE);
    if (files === 0) throw new Error("the gateway wrote no compile cache");
    openToOtherUsers(CACHE);
    say(
      `${manifest.name} ${manifest.version}, Node ${process.versions.node}, uid ${user.uid}: ` +
        `${files} files, ${(bytes / 1e6).toFixed(1)} MB in ${CACHE} ` +
        `(up in ${((upAt - started) / 1000).toFixed(1)} s, exited ${exit.code ?? exit.signal} ` +
        `${((Date.now() - stopping) / 1000).toFixed(1)} s after SIGTERM); no packet left loopback; ` +
        `refused at its proxy: ${[...proxy.asked].sort().join(", ") || "nothing"}`,
    );
  } catch (error) {
    gateway.kill("SIGKILL");
    fs.rmSync(LINK, { force: true });
    fs.rmSync(CACHE, { recursive: true, force: true });
    throw error;
  } finally {
    proxy.server.close();
    // Nothing of that start but the cache stays: its state, home, logs (/tmp/openclaw) and locks.
    for (const name of fs.readdirSync("/tmp")) {
      if (path.join("/tmp", name) !== LINK) fs.rmSync(path.join("/tmp", name), { recursive: true, force: true });
    }
  }
}

await main();
