// The admin page.
import { header } from "./console.js";

header();
