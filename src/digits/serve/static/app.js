// The drawing page: strokes on a canvas, sent to POST /predict as a PNG while you draw.
// pad.dataset.version counts drawing changes; prediction.dataset.version names the change the
// shown prediction belongs to (tests wait until the two agree). One request at a time, a drawing's
// or an opened image's: the latest input waits for it, and replaces any input waiting before it.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const prediction = document.getElementById("prediction");
const confidence = document.getElementById("confidence");
const bars = document.getElementById("bars");
const seen = document.getElementById("seen").getContext("2d");
const status = document.getElementById("status");
const undoButton = document.getElementById("undo");
const clearButton = document.getElementById("clear");
const result = document.getElementById("result");
const working = document.getElementById("working");
const PEN = 0.07;  // stroke width as a fraction of the pad: close to MNIST's stroke to digit height
const TIMEOUT_MS = 30000;  // a request unanswered this long is given up (and said so), freeing the next
const WORKING_AFTER_MS = 300;  // "working…" only for a slow answer: not a flicker after every stroke
const FORM_BYTES = 1024;  // what the multipart form adds to a file's bytes, at most (its headers, boundary)

let strokes = [];
let current = null;
let drawing = null;  // pointerId drawing `current`: other pointers (a second finger) are ignored till it ends
let version = 0;
let inFlight = false;
let next = null;  // sent once the request in flight is answered: "drawing" (the pad then) or {file, v}
let shown = 0;  // the version on show: a slower reply for an older one must not replace it
let maxUpload = 0;  // the server's limit on a request body in bytes (GET /health); 0 till known

for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.innerHTML = `<span class="name">${d}</span><span class="track"><span class="fill"></span></span>` +
                 `<span class="value">0%</span>`;
  bars.appendChild(li);
}

function point(e) {
  // the bounding box includes the pad's CSS border; the pixels fill only the box inside it
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left - pad.clientLeft) * pad.width / pad.clientWidth,
          (e.clientY - r.top - pad.clientTop) * pad.height / pad.clientHeight];
}

function drawStroke(s) {
  ctx.lineWidth = PEN * pad.width;
  ctx.beginPath();
  ctx.moveTo(s[0][0], s[0][1]);
  if (s.length === 1) ctx.lineTo(s[0][0] + 0.01, s[0][1]);  // a tap leaves a dot
  for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

function redraw() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#111";
  ctx.lineCap = ctx.lineJoin = "round";
  strokes.forEach(drawStroke);
}

function changed() {
  version += 1;
  pad.dataset.version = String(version);
  undoButton.disabled = clearButton.disabled = strokes.length === 0;
  request();
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  if (current) return;
  pad.setPointerCapture(e.pointerId);
  drawing = e.pointerId;
  current = [point(e)];
  strokes.push(current);
  redraw();
  changed();
});
pad.addEventListener("pointermove", (e) => {
  if (!current || e.pointerId !== drawing) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of (events.length ? events : [e])) current.push(point(ev));
  redraw();
  changed();
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  pad.addEventListener(type, (e) => { if (e.pointerId === drawing) current = drawing = null; });
}
undoButton.addEventListener("click", () => { strokes.pop(); redraw(); changed(); });
clearButton.addEventListener("click", () => { strokes = []; redraw(); changed(); });
document.getElementById("upload").addEventListener("change", (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (!file) return;
  version += 1;  // the file replaces the drawing's request waiting, if any
  if (maxUpload && file.size + FORM_BYTES > maxUpload) {  // refused here rather than sent in vain
    next = null;
    fail(`The image is over ${+(maxUpload / 2 ** 20).toFixed(1)} MB, the most the server takes: ` +
         "open a smaller one (a screenshot of the digit will do).", version);
    return;
  }
  next = { file, v: version };
  pump();
});

function request() {
  next = "drawing";
  pump();
}

function pump() {
  // sends what waits, unless a request is in flight: its end calls pump again
  if (inFlight || next === null) return;
  const job = next;
  next = null;
  if (job !== "drawing") { send(job.file, job.v); return; }
  if (strokes.length === 0) { show(null, version); return; }
  const v = version;
  inFlight = true;
  pad.toBlob((blob) => send(blob, v), "image/png");
}

async function send(blob, v) {
  inFlight = true;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  const slow = setTimeout(() => busy(true), WORKING_AFTER_MS);
  try {
    show(await predict(blob, controller.signal), v);
  } catch (err) {
    fail(err.message, v);
  } finally {
    clearTimeout(timer);
    clearTimeout(slow);
    busy(false);
    inFlight = false;
    pump();
  }
}

async function predict(blob, signal) {
  // the server's prediction for `blob`, or an Error whose message says what went wrong, and where
  const body = new FormData();
  body.append("file", blob, "drawing.png");
  let response, text;
  try {
    response = await fetch("/predict", { method: "POST", body, signal });
    text = await response.text();
  } catch (err) {
    throw new Error(signal.aborted ? `The server did not answer within ${TIMEOUT_MS / 1000} s; try again.`
                                   : "Cannot reach the server: is digits serve still running?");
  }
  let data = null;
  if ((response.headers.get("content-type") || "").startsWith("application/json")) {
    try { data = JSON.parse(text); } catch (err) { data = null; }
  }
  if (response.ok && data && Array.isArray(data.probabilities)) return data;
  const answered = `${response.status}${response.statusText ? ` (${response.statusText})` : ""}`;
  if (!data || typeof data.detail !== "string") {  // a proxy's HTML page, say: not the server's own answer
    throw new Error(`The server answered ${answered}, not a prediction; try again later.`);
  }
  if ([400, 413, 415, 422].includes(response.status)) throw new Error(`Could not read it: ${data.detail}`);
  throw new Error(`The server answered ${answered}: ${data.detail}`);
}

function busy(on) {
  result.classList.toggle("busy", on);
  working.hidden = !on;
}

function fail(message, v) {
  // the result on show belonged to an earlier drawing or image: it goes, the message takes its place
  if (v < shown) return;
  show(null, v);
  status.textContent = message;
}

function show(data, v) {
  if (v < shown) return;
  shown = v;
  status.textContent = "";  // an error message is about the result it could not replace
  const probs = data ? data.probabilities : new Array(10).fill(0);
  prediction.textContent = data ? String(data.prediction) : "–";
  confidence.textContent = data ? `${(100 * probs[data.prediction]).toFixed(1)}% sure` : "\u00a0";
  [...bars.children].forEach((li, d) => {
    li.classList.toggle("top", !!data && d === data.prediction);
    li.querySelector(".fill").style.width = `${(100 * probs[d]).toFixed(1)}%`;
    li.querySelector(".value").textContent = `${(100 * probs[d]).toFixed(probs[d] < 0.1 ? 1 : 0)}%`;
  });
  const image = seen.createImageData(28, 28);
  if (data) {
    data.pixels.flat().forEach((value, i) => {
      image.data.set([value, value, value, 255], 4 * i);
    });
  }
  seen.putImageData(image, 0, 0);
  prediction.dataset.version = String(v);
}

fetch("/health").then((r) => r.json()).then((h) => {
  if (Number.isFinite(h.max_upload_bytes) && h.max_upload_bytes > 0) maxUpload = h.max_upload_bytes;
}).catch(() => {});  // unknown: the server's 413 says it instead

fetch("/model").then((r) => r.json()).then((m) => {
  const acc = m.metrics && m.metrics.test_accuracy;
  const parts = [`model: ${m.model_name || "?"}`, m.parameters ? `${m.parameters.toLocaleString()} parameters` : "",
                 acc ? `${(100 * acc).toFixed(2)}% on the MNIST test set` : "", `backend: ${m.backend}`];
  document.getElementById("model").textContent = parts.filter(Boolean).join(" · ");
}).catch(() => {});

redraw();
show(null, 0);
