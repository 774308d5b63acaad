// The mask painter: strokes painted over the first reference, exported as the PNG mask
// the API takes (mask_url): the reference's exact pixel size, alpha 0 where the image is
// to be edited (OpenAI's convention), opaque everywhere else.
//
// The reference is shown as an <img> under a transparent <canvas> that holds the strokes
// only: drawing the image itself into a canvas would taint it (the object store is
// another origin) and make it impossible to export.

import { el } from "/assets/console.js";

const INK = "rgba(230, 40, 60, 0.55)"; // how painted areas look on screen

export class MaskPainter {
  // stage: the element to draw in; brush: the <input type=range> giving the brush size
  // in screen pixels; onchange: called after each stroke, undo or clear.
  constructor(stage, brush, onchange) {
    this.stage = stage;
    this.brush = brush;
    this.onchange = onchange;
    this.strokes = []; // [{width, points: [[x, y], …]}] in the reference's own pixels
    this.size = null; // the reference's [width, height]
    this.image = el("img", { alt: "the first reference, to paint the mask on" });
    this.canvas = el("canvas", { "aria-label": "mask: drag to paint the area to edit" });
    this.canvas.addEventListener("pointerdown", (e) => this.begin(e));
    this.canvas.addEventListener("pointermove", (e) => this.extend(e));
    this.canvas.addEventListener("pointerup", () => this.end());
    this.canvas.addEventListener("pointercancel", () => this.end());
    stage.replaceChildren(this.image, this.canvas);
  }

  get painted() {
    return this.strokes.length > 0;
  }

  // Show a new first reference; its old strokes no longer apply.
  setImage(url, width, height) {
    if (this.image.getAttribute("src") === url && this.size?.[0] === width) return;
    this.image.src = url;
    // the stage takes its final size now, not when the image has loaded
    this.image.width = width;
    this.image.height = height;
    this.size = [width, height];
    this.canvas.width = width;
    this.canvas.height = height;
    this.strokes = [];
    this.redraw();
  }

  clear() {
    this.strokes = [];
    this.redraw();
    this.onchange();
  }

  undo() {
    this.strokes.pop();
    this.redraw();
    this.onchange();
  }

  // A pointer position in the reference's pixels (the canvas is scaled to fit the page).
  pointAt(event) {
    const box = this.canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) / box.width) * this.canvas.width,
      ((event.clientY - box.top) / box.height) * this.canvas.height,
    ];
  }

  begin(event) {
    if (!this.size) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    const scale = this.canvas.width / this.canvas.getBoundingClientRect().width;
    this.current = { width: Number(this.brush.value) * scale, points: [this.pointAt(event)] };
    this.strokes.push(this.current);
    this.redraw();
  }

  extend(event) {
    if (!this.current) return;
    this.current.points.push(this.pointAt(event));
    this.redraw();
  }

  end() {
    if (!this.current) return;
    this.current = null;
    this.onchange();
  }

  redraw() {
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    paint(ctx, this.strokes, INK);
  }

  // The mask as a PNG Blob: opaque black, with the painted strokes cut out (alpha 0).
  toPng() {
    const [width, height] = this.size;
    const out = el("canvas", { width, height });
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    ctx.globalCompositeOperation = "destination-out";
    paint(ctx, this.strokes, "#000");
    return new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }
}

function paint(ctx, strokes, colour) {
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const { width, points } of strokes) {
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.moveTo(...points[0]);
    // a single tap draws a dot: a zero-length line with round caps
    for (const point of points.length > 1 ? points.slice(1) : points) ctx.lineTo(...point);
    ctx.stroke();
  }
}
