/** Product service: the global catalog (industries, categories, products) and the products each client sells. */
import { createModule } from "../routing.ts";
import * as handlers from "./products.handlers.ts";
import * as routes from "./products.routes.ts";

export const productsRoutes = routes.routes;

export function productsModule() {
  return createModule()
    .openapi(routes.getCatalog, handlers.getCatalog)
    .openapi(routes.listIndustries, handlers.listIndustries)
    .openapi(routes.getIndustry, handlers.getIndustry)
    .openapi(routes.createIndustry, handlers.createIndustry)
    .openapi(routes.updateIndustry, handlers.updateIndustry)
    .openapi(routes.deleteIndustry, handlers.deleteIndustry)
    .openapi(routes.listCategories, handlers.listCategories)
    .openapi(routes.getCategory, handlers.getCategory)
    .openapi(routes.createCategory, handlers.createCategory)
    .openapi(routes.updateCategory, handlers.updateCategory)
    .openapi(routes.deleteCategory, handlers.deleteCategory)
    .openapi(routes.listProducts, handlers.listProducts)
    .openapi(routes.getProduct, handlers.getProduct)
    .openapi(routes.createProduct, handlers.createProduct)
    .openapi(routes.updateProduct, handlers.updateProduct)
    .openapi(routes.deleteProduct, handlers.deleteProduct)
    .openapi(routes.listClientProducts, handlers.listClientProducts)
    .openapi(routes.enableClientProduct, handlers.enableClientProduct)
    .openapi(routes.disableClientProduct, handlers.disableClientProduct);
}
