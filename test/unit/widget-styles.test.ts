import { describe, expect, it } from "vitest";
import { hostStyle } from "../../widget/src/styles.js";

const declarations = (style: string) => style.split(";").map((d) => d.split(":"));

describe("widget host style", () => {
  it("makes every declaration !important, so no page stylesheet can override it", () => {
    for (const [, value] of declarations(hostStyle("right"))) expect(value).toMatch(/!important$/);
  });

  it("pins the widget to the corner chosen with data-position", () => {
    expect(declarations(hostStyle("right"))).toEqual(expect.arrayContaining([["right", "0!important"], ["left", "auto!important"]]));
    expect(declarations(hostStyle("left"))).toEqual(expect.arrayContaining([["left", "0!important"], ["right", "auto!important"]]));
  });
});
