// The dashboard page.
import { header } from "./console.js";

header();
