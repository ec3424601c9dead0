//! `/v1/webhooks`: subscriptions, their delivery log, and replaying a delivery.

use crate::{Client, NO_QUERY, Result};
use portauthority_core::api::webhooks::{
    CreateWebhookRequest, DeliveryAttempt, DeliveryList, WebhookEnvelope, WebhookList,
    WebhookResource,
};
use reqwest::Method;
use uuid::Uuid;

impl Client {
    /// Subscribes a URL; the answer holds the signing secret, which no later answer does.
    pub async fn create_webhook(&self, req: &CreateWebhookRequest) -> Result<WebhookResource> {
        let env: WebhookEnvelope = self.call(Method::POST, "/v1/webhooks", req).await?;
        Ok(env.webhook)
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookResource>> {
        let list: WebhookList = self.get("/v1/webhooks", NO_QUERY).await?;
        Ok(list.webhooks)
    }

    pub async fn get_webhook(&self, id: Uuid) -> Result<WebhookResource> {
        let env: WebhookEnvelope = self.get(&format!("/v1/webhooks/{id}"), NO_QUERY).await?;
        Ok(env.webhook)
    }

    /// Deletes a webhook with its deliveries.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<()> {
        let rb = self.request(Method::DELETE, &format!("/v1/webhooks/{id}"));
        self.answer(rb).await.map(drop)
    }

    /// The newest `size` entries of a webhook's delivery log (server default when `None`).
    pub async fn webhook_deliveries(
        &self,
        id: Uuid,
        size: Option<u32>,
    ) -> Result<Vec<DeliveryAttempt>> {
        let query: Vec<(&str, String)> =
            size.map(|n| ("size", n.to_string())).into_iter().collect();
        let list: DeliveryList = self
            .get(&format!("/v1/webhooks/{id}/deliveries"), &query)
            .await?;
        Ok(list.deliveries)
    }

    /// Makes a delivery due now (a new attempt, same body and `webhook-id`).
    pub async fn retry_delivery(&self, webhook: Uuid, delivery: Uuid) -> Result<()> {
        let path = format!("/v1/webhooks/{webhook}/deliveries/{delivery}/retry");
        self.answer(self.request(Method::POST, &path))
            .await
            .map(drop)
    }
}
