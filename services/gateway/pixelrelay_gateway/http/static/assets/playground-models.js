// The models as the playground knows them: each one's capabilities and prices as
// GET /api/v1/models lists them (docs/api.md, ModelOut), and what follows from them for
// the form: the values each field offers, the price row a choice is charged at, and what
// a model does not take (and which models do).
//
// Before anyone is signed in (or when the list cannot be read) the page shows the
// packaged catalog's listing, playground-packaged.json (a unit test keeps it equal to
// libs/pixelrelay/catalog.yaml's), and says so.

// The gateway's size table (gateway/core/sizes.py): every ratio, and the ones 4k takes.
export const ALL_RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "2:1", "1:2", "21:9", "9:21"];
export const WIDE_RATIOS_FOR_4K = ["16:9", "9:16", "2:1", "1:2", "21:9", "9:21"];

export const PACKAGED_URL = "/assets/playground-packaged.json";

// The ratios the model makes (none listed: all of the table).
export const ratiosOf = (model) => model.capabilities.ratios?.length ? model.capabilities.ratios : ALL_RATIOS;

// Whether a request for `model` may carry `field` (catalog.py's takes()).
export function takes(model, field) {
  const caps = model.capabilities;
  switch (field) {
    case "n": return caps.max_n > 1;
    case "quality": return caps.qualities.length > 0;
    case "background": return caps.backgrounds.length > 0;
    case "moderation": return caps.moderations.length > 0;
    case "output_format": return caps.formats.length > 1;
    case "output_compression": return caps.output_compression;
    case "mask_url": return caps.masks;
    case "custom_size": return caps.sizes === "any";
    default: return true;
  }
}

// The tier `quality` is priced at: auto as the model quotes it, any other as itself.
const tier = (model, quality) => (quality === "auto" ? model.auto_quoted_as || "" : quality || "");

// The price row a resolution and quality are charged at (the first that matches), or null:
// not sold.
export function priceRow(model, resolution, quality) {
  const at = tier(model, quality);
  return model.prices.find((row) => (!row.resolutions || row.resolutions.includes(resolution)) &&
    (!row.qualities || row.qualities.includes(at))) || null;
}

// The qualities sold at `resolution`, in the model's order ("auto" among them if its
// tier is).
export const qualitiesAt = (model, resolution) =>
  model.capabilities.qualities.filter((q) => priceRow(model, resolution, q));

// What the model does not take that another does, in words, with who takes it:
// "more images, quality and a mask need gpt-image-2-official" ("" when it lacks nothing).
export function lacking(model, all) {
  const caps = model.capabilities;
  const others = all.filter((m) => m.id !== model.id);
  const mostReferences = (m) => m.capabilities.max_references;
  const features = [
    ["more images", (m) => m.capabilities.max_n > caps.max_n, true],
    ["quality", (m) => takes(m, "quality") && !takes(model, "quality")],
    ["background", (m) => takes(m, "background") && !takes(model, "background")],
    ["format", (m) => takes(m, "output_format") && !takes(model, "output_format")],
    ["compression", (m) => takes(m, "output_compression") && !takes(model, "output_compression")],
    ["moderation", (m) => takes(m, "moderation") && !takes(model, "moderation")],
    ["more references", (m) => mostReferences(m) > caps.max_references, true],
    ["a mask", (m) => takes(m, "mask_url") && !takes(model, "mask_url")],
    ["WIDTHxHEIGHT sizes", (m) => takes(m, "custom_size") && !takes(model, "custom_size"), true],
  ];
  // grouped by who takes them, in the order above: "a and b need X; c needs X or Y"
  const groups = new Map();
  for (const [words, offeredBy, plural] of features) {
    const takers = others.filter(offeredBy).map((m) => m.id);
    if (!takers.length) continue;
    const key = takers.join(" or ");
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push([words, plural]);
  }
  return [...groups].map(([takers, items]) => {
    const plural = items.length > 1 || items[0][1];
    return `${listed(items.map(([w]) => w))} ${plural ? "need" : "needs"} ${takers}`;
  }).join("; ");
}

// What the model makes, in words: "gpt-image-2 makes one PNG per task from a ratio".
export function makes(model) {
  const caps = model.capabilities;
  const count = caps.max_n === 1 ? "one" : `up to ${caps.max_n}`;
  const what = caps.formats.length === 1 ? caps.formats[0].toUpperCase() : "image";
  const plural = caps.max_n === 1 || caps.formats.length === 1 ? "" : "s";
  const ratios = caps.ratios?.length ? `one of the ratios ${caps.ratios.join(", ")}` : "a ratio";
  const from = caps.sizes === "any" ? `${ratios} or WIDTHxHEIGHT` : ratios;
  const at = caps.resolutions.length === 1 ? ` at ${caps.resolutions[0]}` : "";
  return `${model.id} makes ${count} ${what}${plural} per task from ${from}${at}`;
}

const listed = (words) => (words.length < 2 ? words.join("") : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`);
