// The login page.
import { header } from "./console.js";

header();
