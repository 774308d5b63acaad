// The request on screen as code to copy: curl against reAPI, Python with the openai SDK
// against the OpenAI-compatible /v1 routes, or reAPI's JSON body. Never the real key:
// every snippet reads it from $PIXELRELAY_API_KEY.

const GENERATIONS = "/api/v1/images/generations";

// A string as one single-quoted shell word.
const shellQuoted = (text) => `'${text.replaceAll("'", `'\\''`)}'`;

export function reapiJson(body) {
  return JSON.stringify(body, null, 2);
}

export function curl(origin, body) {
  return [
    `curl -sS ${origin}${GENERATIONS} \\`,
    `  -H "Authorization: Bearer $PIXELRELAY_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d ${shellQuoted(JSON.stringify(body))}`,
    "# then poll: curl -sS " + origin + "/api/v1/tasks/TASK_ID -H \"Authorization: Bearer $PIXELRELAY_API_KEY\"",
  ].join("\n");
}

// Python's literal for a JSON value (None, True, False and strings as JSON spells them).
function py(value) {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  return JSON.stringify(value);
}

// The OpenAI SDK's size: WIDTHxHEIGHT (which /v1 maps back onto ratio and resolution), or
// auto. `pixels` is the estimate's resolved width and height, when known.
function openaiSize(body, pixels) {
  if (body.size === "auto") return "auto";
  if (/^\d+x\d+$/.test(body.size)) return body.size;
  return pixels ? `${pixels.width}x${pixels.height}` : "auto";
}

const OPENAI_FIELDS = ["n", "quality", "background", "moderation", "output_format", "output_compression"];

export function python(origin, body, pixels) {
  const args = [`model=${py(body.model)}`, `prompt=${py(body.prompt || "")}`,
    `size=${py(openaiSize(body, pixels))}`];
  for (const name of OPENAI_FIELDS) if (body[name] !== undefined) args.push(`${name}=${py(body[name])}`);
  const lines = [
    "import os",
    ...(body.image_urls ? ["from urllib.request import urlopen"] : []),
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${py(origin + "/v1")}, api_key=os.environ["PIXELRELAY_API_KEY"])`,
  ];
  if (body.image_urls) {
    // /v1/images/edits takes files: the references (and mask) are fetched first
    const files = body.image_urls.map((url, i) => `    ("reference-${i + 1}.png", urlopen(${py(url)}).read(), "image/png"),`);
    lines.push("images = [", ...files, "]");
    args.unshift("image=images");
    if (body.mask_url) {
      lines.push(`mask = ("mask.png", urlopen(${py(body.mask_url)}).read(), "image/png")`);
      args.push("mask=mask");
    }
    lines.push(`result = client.images.edit(`);
  } else {
    lines.push(`result = client.images.generate(`);
  }
  lines.push(...args.map((a) => `    ${a},`), ")", "for image in result.data:", "    print(image.url)");
  return lines.join("\n");
}
