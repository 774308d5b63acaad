// The signup page.
import { header } from "./console.js";

header();
